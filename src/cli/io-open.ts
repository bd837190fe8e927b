import { unlink } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { BlockBackend } from '../blockdev/block-backend.js';
import { BlockGraph } from '../blockdev/graph.js';
import type { BlockNode } from '../blockdev/node.js';
import { openBlockdev } from '../blockdev/open.js';
import { backendTarget, type QemuIoTarget } from '../blockdev/qemu-io/index.js';
import { openImage } from '../image/open.js';
import { appendTempSnapshot, tempSnapshotPath } from '../blockdev/temp-snapshot.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_WRITE } from '../image/perm.js';
import { filenameOptionsSpec } from '../qmp/commands/drive.js';
import { qdictOrder } from '../qmp/qdict-order.js';
import { pathCombine, withHint } from './img/open.js';
import { type IoArgs, PROG } from './io-args.js';
import { parseImageOpts } from '../blockdev/qemu-io/qemu-opts.js';

/**
 * qemu-io's openfile(): blk_new_open(filename, options, flags) — a node
 * graph opened from the file name (a host path, `json:{…}`, blkdebug:…,
 * nbd:…, null-co://) and the options (--image-opts, `open -o`, -f as
 * driver=), with the command-line flags as the options they stand for
 * where the options do not say (read-only, cache.direct, cache.no-flush,
 * force-share, the file node's aio), under a BlockBackend that takes
 * consistent read, and write unless -r. -s puts a temporary qcow2 overlay
 * over it (bdrv_append_temp_snapshot).
 *
 * Cache modes: Node has no O_DIRECT, so cache.direct=on is accepted and the
 * page cache stays in use; what remains observable is kept: writethrough
 * (qemu-io's default, and directsync) makes every write FUA (a flush inside
 * the request), and cache.no-flush makes flushes no-ops.
 */

/** An open image: the target the interpreter runs on, and its close. */
export interface IoDevice {
  target: QemuIoTarget;
  /** The BlockBackend's node (the graph's root). */
  readonly node: BlockNode;
  close(): Promise<void>;
}

export type IoOpen = { device?: IoDevice; warnings: string[] } | { error: string; warnings: string[] };

/** Where blkdebug's lines (and drivers' error_report lines) go while the image is open. */
export interface IoOpenSinks {
  stdout(text: string): void;
  stderr(text: string): void;
  /** The secrets --object made (an encrypted image's encrypt.key-secret names one). */
  secretBytes?: (id: string) => Uint8Array;
  /** Ends the tool at once with this status (a quorum in blkverify mode that met a mismatch, as QEMU's exit(1)). */
  exit?: (status: number) => void;
}

/**
 * Opens what `a` names as qemu-io does, or says what qemu-io prints instead
 * (the text after "prog: "). `extraOptions`: `open -o` option strings, read
 * as --image-opts' are. Warnings are whole lines for stderr, printed first.
 */
export async function openIoDevice(a: IoArgs, sinks: IoOpenSinks, extraOptions: readonly string[] = []): Promise<IoOpen> {
  const warnings: string[] = [];
  const opts = new Map<string, string>();
  let filename: string | undefined = a.file;
  if (a.imageOpts) {
    filename = undefined;
    if (a.file === undefined) return { warnings };
    const parsed = parseImageOpts(a.file);
    warnings.push(...parsed.warnings.map((w) => `${PROG}: ${w}\n`));
    for (const [k, v] of parsed.opts) opts.set(k, v);
  }
  for (const text of extraOptions) {
    const parsed = parseImageOpts(text);
    warnings.push(...parsed.warnings.map((w) => `${PROG}: ${w}\n`));
    for (const [k, v] of parsed.opts) opts.set(k, v);
  }
  if (filename === undefined && opts.size === 0) return { warnings };
  if (a.format !== undefined && !opts.has('driver')) opts.set('driver', a.format);
  if (a.forceShare) {
    if (opts.has('force-share') && opts.get('force-share') !== 'on') return { error: '-U conflicts with image options', warnings };
    opts.set('force-share', 'on');
  }
  const what = filename !== undefined ? `can't open device ${filename}: ` : "can't open: ";
  const graph = new BlockGraph();
  if (sinks.secretBytes) graph.secretBytes = sinks.secretBytes;
  graph.onEvent = (e) => {
    if (e.kind === 'debug-print') sinks.stdout(e.text);
    // error_report in a tool: the program name first.
    else if (e.kind === 'error-report') sinks.stderr(`${PROG}: ${e.message}\n`);
    else if (e.kind === 'verify-mismatch') {
      // quorum_compare's fprintf and exit(1): the tool ends there.
      sinks.stderr(`${e.message}\n`);
      sinks.exit?.(1);
    }
  };
  const readOnly = a.readOnly;
  const blk = new BlockBackend({ perm: PERM_CONSISTENT_READ | (readOnly ? 0 : PERM_WRITE), shared: PERM_ALL });
  let temporary: string | undefined;
  try {
    // bdrv_open's update_options_from_flags: the flags, where the options leave them unsaid.
    const setDefault = (k: string, v: string) => {
      if (!opts.has(k)) opts.set(k, v);
    };
    setDefault('read-only', readOnly || a.snapshot ? 'on' : 'off');
    setDefault('cache.direct', a.cache.direct ? 'on' : 'off');
    setDefault('cache.no-flush', a.cache.noFlush ? 'on' : 'off');
    if (a.aio !== 'threads') setDefault('aio', a.aio);
    let probedRaw: string | undefined;
    const spec = await filenameOptionsSpec(filename, opts, (w) => (probedRaw = w));
    let node = await openBlockdev(graph, spec, false);
    // raw_open warns only for a writable node.
    if (probedRaw !== undefined && !node.readOnly) warnings.push(probedRaw);
    applyUnmap(node, a.unmap);
    if (a.snapshot) {
      temporary = tempSnapshotPath();
      node = await appendTempSnapshot(graph, node, readOnly, temporary);
      applyUnmap(node, a.unmap);
    }
    if (a.copyOnRead) {
      // BDRV_O_COPY_ON_READ on the top node: a copy-on-read filter over it does what bdrv_enable_copy_on_read does.
      if (node.readOnly) throw new Error("Can't use copy-on-read on read-only device");
      node = await openBlockdev(graph, { driver: 'copy-on-read', file: node.nodeName }, false);
    }
    await blk.insert(node);
    const tmp = temporary;
    return {
      device: {
        node,
        target: backendTarget(blk, node, { writethrough: a.cache.writethrough, reopen: { graph, order: qdictOrder } }),
        close: async () => {
          await blk.remove();
          await graph.closeAll();
          if (tmp !== undefined) await unlink(tmp).catch(() => undefined);
        },
      },
      warnings,
    };
  } catch (err) {
    await blk.remove().catch(() => undefined);
    await graph.closeAll().catch(() => undefined);
    if (temporary !== undefined) await unlink(temporary).catch(() => undefined);
    const text = withHint(err instanceof Error ? err.message : String(err), err);
    return { error: what + (await backingNames(text, filename)), warnings };
  }
}

/**
 * qemu-io names a backing file it could not open by path_combine of the
 * name stored in its overlay and the overlay's name as typed; the graph
 * opens it by absolute path. The headers down the chain (read without
 * opening backing files) give the stored names to put back.
 */
async function backingNames(message: string, top: string | undefined): Promise<string> {
  if (top === undefined || !message.includes('Could not open backing file')) return message;
  let msg = message;
  let name = top;
  for (let depth = 0; depth < 64; depth++) {
    let info;
    try {
      const img = await openImage(name, { readOnly: true, openBacking: false });
      info = img.info();
      await img.close();
    } catch {
      break;
    }
    const stored = info.backingFilename;
    if (stored === undefined || stored.startsWith('json:')) break;
    const absolute = isAbsolute(stored) ? stored : resolve(dirname(name), stored);
    const shown = pathCombine(name, stored);
    msg = msg.split(`'${absolute}'`).join(`'${shown}'`).split(`[${absolute}]`).join(`[${shown}]`);
    name = shown;
  }
  return msg;
}

/** qemu-io's BDRV_O_UNMAP (on unless -d ignore): discards reach every node that was not given a discard option of its own. */
function applyUnmap(node: BlockNode, unmap: boolean): void {
  // A node given its own discard keeps it, and its children inherited it.
  if ('discard' in node.explicitOptions) return;
  node.settings = { ...node.settings, discard: unmap ? 'unmap' : 'ignore' };
  for (const c of node.childList()) applyUnmap(c.node, unmap);
}


