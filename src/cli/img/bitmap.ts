import * as ops from '../../blockdev/bitmap-ops.js';
import { imgBlockGraph } from './objects.js';
import { BlockBackend } from '../../blockdev/block-backend.js';
import type { BlockGraph } from '../../blockdev/graph.js';
import type { BlockNode } from '../../blockdev/node.js';
import { openBlockdev } from '../../blockdev/open.js';
import { probeFormat } from '../../image/probe.js';
import { backendPerms } from '../../image/tool-perms.js';
import { innerOpenMessage, probedRawWarning, withHint } from './open.js';
import { parseImageOpts } from '../../blockdev/qemu-io/qemu-opts.js';
import { filenameOptionsSpec } from '../../qmp/commands/drive.js';
import { PROG } from './output.js';
import { type ImgIo, ImgFailure } from './output.js';
import { parseQemuSize } from './size-arg.js';

export type BitmapAction = { op: 'add' | 'remove' | 'clear' | 'enable' | 'disable' } | { op: 'merge'; source: string };

export interface BitmapArgs {
  /** In command-line order: qemu-img runs them in that order. */
  actions: BitmapAction[];
  format?: string;
  sourceFile?: string;
  sourceFormat?: string;
  granularity?: string;
  /** --image-opts: the image operand is an option string (driver=qcow2,file.filename=…). */
  imageOpts?: boolean;
  args: string[];
}

/**
 * `blockemu img bitmap` (qemu-img bitmap): edits an image's persistent
 * dirty bitmaps. As qemu-img does, the image is opened as a block node
 * (without its backing chain) and each action is the monitor command of the
 * same name on it, so checks and messages are the daemon's; the bitmaps are
 * stored when the node closes, also after a failed action (what went before
 * it stays done, as in qemu-img).
 */
export async function imgBitmap(io: ImgIo, a: BitmapArgs): Promise<number> {
  let granularity: number | undefined;
  if (a.granularity !== undefined) {
    const p = parseQemuSize(a.granularity);
    if (!p.ok || p.value >= 1n << 63n) {
      throw new ImgFailure(['Invalid granularity specified. You may use k, M, G, T, P or E suffixes for', 'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.']);
    }
    granularity = Number(p.value) || undefined;
  }
  if (a.actions.length === 0) throw new ImgFailure('Need at least one of --add, --remove, --clear, --enable, --disable, or --merge');
  if (granularity !== undefined && !a.actions.some((x) => x.op === 'add')) throw new ImgFailure('granularity only supported with --add');
  if (a.sourceFormat !== undefined && a.sourceFile === undefined) throw new ImgFailure('-F only supported with -b');
  if (a.sourceFile !== undefined && !a.actions.some((x) => x.op === 'merge')) throw new ImgFailure('Merge bitmap source file only supported with --merge');
  if (a.args.length !== 2) throw new ImgFailure('Expecting filename and bitmap name');
  const [filename, bitmap] = a.args as [string, string];

  const graph = await imgBlockGraph();
  const users: BlockBackend[] = [];
  try {
    if (a.imageOpts && a.format !== undefined) throw new ImgFailure('--image-opts and --format are mutually exclusive');
    const node = a.imageOpts ? await openOptionsNode(io, graph, users, filename) : await openNode(io, graph, users, filename, a.format, false);
    const src = a.sourceFile !== undefined ? await openNode(io, graph, users, a.sourceFile, a.sourceFormat, true) : node;
    for (const act of a.actions) {
      try {
        await runAction(graph, node, src, bitmap, act, granularity);
      } catch (err) {
        throw new ImgFailure(`Operation ${act.op} on bitmap ${bitmap} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return 0;
  } finally {
    for (const blk of users) await blk.remove();
    await graph.closeAll();
  }
}

async function runAction(graph: BlockGraph, node: BlockNode, src: BlockNode, bitmap: string, act: BitmapAction, granularity: number | undefined): Promise<void> {
  const name = node.nodeName;
  switch (act.op) {
    case 'add':
      await ops.addBitmap(graph, { node: name, name: bitmap, granularity, persistent: true });
      return;
    case 'remove':
      await ops.removeBitmap(graph, name, bitmap);
      return;
    case 'clear':
      ops.clearBitmap(graph, name, bitmap);
      return;
    case 'enable':
    case 'disable':
      ops.setBitmapEnabled(graph, name, bitmap, act.op === 'enable');
      return;
    case 'merge':
      ops.mergeBitmaps(graph, name, bitmap, [{ node: src.nodeName, name: act.source }]);
      return;
  }
}

/** img_open of an --image-opts string, with BDRV_O_NO_BACKING: the node the options describe, read-write. */
async function openOptionsNode(io: ImgIo, graph: BlockGraph, users: BlockBackend[], optstr: string): Promise<BlockNode> {
  const { opts, warnings } = parseImageOpts(optstr, 'file');
  for (const w of warnings) io.err(`${PROG}: ${w}\n`);
  try {
    if (!opts.has('read-only')) opts.set('read-only', 'off');
    const spec = await filenameOptionsSpec(undefined, opts, (w) => io.err(w));
    if (spec.driver === 'qcow2' && spec['backing'] === undefined) spec['backing'] = null;
    const node = await openBlockdev(graph, spec);
    const blk = new BlockBackend(backendPerms({ readOnly: false }));
    await blk.insert(node);
    users.push(blk);
    return node;
  } catch (err) {
    throw new ImgFailure(`Could not open '${optstr}': ${withHint(innerOpenMessage(err, optstr), err)}`);
  }
}

/**
 * img_open with BDRV_O_NO_BACKING: the format node (generated name, as
 * qemu-img's) over a file node, used through a BlockBackend as
 * blk_new_open's (taking consistent read, and write unless read-only,
 * sharing all), so its file is locked as qemu-img bitmap locks it.
 */
export async function openNode(io: ImgIo, graph: BlockGraph, users: BlockBackend[], filename: string, format: string | undefined, readOnly: boolean): Promise<BlockNode> {
  try {
    const driver = format ?? (await probeFormat(filename));
    if (format === undefined && driver === 'raw' && !readOnly) io.err(probedRawWarning(filename));
    const node = await openBlockdev(graph, {
      driver,
      'read-only': readOnly,
      file: { driver: 'file', filename },
      ...(driver === 'qcow2' ? { backing: null } : {}),
    });
    const blk = new BlockBackend(backendPerms({ readOnly }));
    await blk.insert(node);
    users.push(blk);
    return node;
  } catch (err) {
    throw new ImgFailure(`Could not open '${filename}': ${withHint(innerOpenMessage(err, filename), err)}`);
  }
}
