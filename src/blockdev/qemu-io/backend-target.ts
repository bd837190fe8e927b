import { loadVmState, saveVmState } from '../vm-state.js';
import { BlockError } from '../../image/errors.js';
import { PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../../image/perm.js';
import { type ReopenContext, reopenKeepingOptions } from '../reopen.js';
import type { BlockBackend } from '../block-backend.js';
import { CHILD_PRIMARY } from '../child.js';
import { BlkdebugNode } from '../drivers/blkdebug.js';
import type { BlockNode } from '../node.js';
import { PROTOCOLS } from '../open.js';
import type { DebugControl, QemuIoTarget } from './target.js';

/** How the BlockBackend's requests go out (blk_set_enable_write_cache), and what `reopen` needs. */
export interface BackendTargetOptions {
  /** Write cache off (qemu-io's default): every write is FUA, which the nodes emulate with a flush (blk_co_pwritev_part). */
  writethrough?: boolean;
  /** For `reopen`: the graph's reopen context (absent: the target cannot be reopened). */
  reopen?: ReopenContext;
  /** A device is attached to the BlockBackend (its write cache mode is the device's). */
  deviceAttached?: boolean;
}

/**
 * bdrv_find_debug_node: from the BlockBackend's node down its primary
 * children (a format's file, a filter's image) to the first blkdebug node.
 */
export function findDebugNode(node: BlockNode | undefined): BlkdebugNode | undefined {
  for (let n = node; n; n = n.childList().find((c) => (c.role & CHILD_PRIMARY) !== 0)?.node) {
    if (n instanceof BlkdebugNode) return n;
  }
  return undefined;
}

/** bdrv_debug_breakpoint and friends on the chain under `root()`: ENOTSUP without a blkdebug node, as QEMU answers. */
export function debugControl(root: () => BlockNode | undefined): DebugControl {
  const node = () => findDebugNode(root());
  return {
    breakpoint: (event, tag) => node()?.setBreakpoint(event, tag) ?? (node() ? undefined : 'ENOTSUP'),
    removeBreakpoint: (tag) => (node() ? node()!.removeBreakpoint(tag) : 'ENOTSUP'),
    resume: (tag) => (node() ? node()!.resume(tag) : 'ENOTSUP'),
    // bdrv_debug_is_suspended is false without a blkdebug node, and wait_break would poll for ever: we return instead.
    waitSuspended: async (tag) => node()?.waitSuspended(tag),
    whenHeld: () => node()?.whenHeld() ?? { promise: new Promise<void>(() => undefined), cancel: () => undefined },
  };
}

/**
 * The node as qemu-io sees it through `blk`: requests through the
 * BlockBackend (its I/O limits, its write cache mode), permissions asked of
 * it when a command writes or resizes (qemu-io's blk_set_perm).
 */
export function backendTarget(blk: BlockBackend, node: BlockNode, opts: BackendTargetOptions = {}): QemuIoTarget {
  let fua = opts.writethrough === true;
  const reopenCtx = opts.reopen;
  const root = () => blk.node ?? node;
  const want = async (bits: number): Promise<void> => {
    const p = blk.perm;
    if ((p.perm & bits) === bits) return;
    await blk.setPerm({ perm: p.perm | bits, shared: p.shared });
  };
  return {
    get readOnly() {
      return root().readOnly;
    },
    async acquireWrite() {
      try {
        await want(PERM_WRITE);
        return undefined;
      } catch (err) {
        return err instanceof Error ? err.message : String(err);
      }
    },
    size: () => root().size(),
    read: (o, l) => blk.read(o, l),
    write: (o, d, f) => blk.write(o, d, fua ? { ...f, fua: true } : f),
    writeZeroes: (o, l, f) => blk.writeZeroes(o, l, fua ? { ...f, fua: true } : f),
    discard: (o, l) => root().discard(o, l),
    flush: () => root().flush(),
    blockStatus: (o, l) => root().blockStatus(o, l),
    // Every node takes a compressed write; a driver without compression answers ENOTSUP, as in QEMU.
    writeCompressed: async (o, d) => {
      await root().writeCompressed(o, d);
      if (fua) await root().flush();
    },
    // blk_save_vmstate: a write, flushed at once when the BlockBackend writes through.
    saveVmState: async (pos, data) => {
      await saveVmState(root(), pos, data);
      if (fua) await root().flush();
    },
    loadVmState: (pos, length) => loadVmState(root(), pos, length),
    // truncate's command takes write and resize (truncate_cmd.perm) before blk_truncate.
    truncate: async (size, prealloc) => {
      await want(PERM_WRITE | PERM_RESIZE);
      if (size < 0) throw new BlockError('INVALID_ARGUMENT', 'Negative size');
      await root().resize(size, prealloc);
    },
    info: () => {
      const n = root() as unknown as { info?: () => { clusterSize?: number } };
      return typeof n.info === 'function' ? n.info() : {};
    },
    debug: debugControl(root),
    describe: () => describeNode(root()),
    ...(reopenCtx
      ? {
          reopen: {
            state: () => {
              const n = root();
              return { readOnly: n.readOnly, cacheDirect: n.settings.cacheDirect, cacheNoFlush: n.settings.cacheNoFlush, writethrough: fua, deviceAttached: opts.deviceAttached === true };
            },
            dropWrite: () => {
              const p = blk.perm;
              return blk.setPerm({ perm: p.perm & ~(PERM_WRITE | PERM_WRITE_UNCHANGED), shared: p.shared });
            },
            apply: (options) => reopenKeepingOptions(reopenCtx, root(), options),
            setWritethrough: (w) => {
              fua = w;
            },
          },
        }
      : {}),
  };
}

/**
 * info_f's view of a node: its driver's format name (and protocol name,
 * the same for protocol drivers), bdrv_get_info — qcow2's cluster size and
 * the VM state area's offset (past the last L2 table's reach), raw's
 * zeroes, a filter's from the node it filters, nothing for protocols —
 * and qcow2's format-specific dump.
 */
async function describeNode(node: BlockNode): Promise<{ names: string[]; info?: { clusterSize: number; vmStateOffset: number }; specific?: string[] }> {
  const names = PROTOCOLS.has(node.driver) ? [node.driver, node.driver] : [node.driver];
  let n: BlockNode | undefined = node;
  while (n && n.isFilter && n.driver !== 'raw') n = n.childList().find((c) => (c.role & CHILD_PRIMARY) !== 0)?.node;
  if (!n || PROTOCOLS.has(n.driver)) return { names };
  if (n.driver !== 'qcow2') return { names, info: { clusterSize: 0, vmStateOffset: 0 } };
  const i = await n.imageInfo();
  const cs = i.clusterSize ?? 65536;
  const reach = cs * (cs / 8);
  const info = { clusterSize: cs, vmStateOffset: Math.ceil(n.size() / reach) * reach };
  const fs = i.formatSpecific;
  if (fs?.type !== 'qcow2') return { names, info };
  const lines = [`compat: ${fs.compat}`, `compression type: ${fs.compressionType}`];
  if (fs.compat !== '0.10') lines.push(`lazy refcounts: ${fs.lazyRefcounts}`);
  if (fs.bitmaps) {
    lines.push('bitmaps:');
    fs.bitmaps.forEach((b, k) => {
      lines.push(`    [${k}]:`, '        flags:', ...b.flags.map((f, j) => `            [${j}]: ${f}`), `        name: ${b.name}`, `        granularity: ${b.granularity}`);
    });
  }
  lines.push(`refcount bits: ${fs.refcountBits}`);
  if (fs.dataFile !== undefined) lines.push(`data file: ${fs.dataFile}`);
  if (fs.dataFileRaw !== undefined) lines.push(`data file raw: ${fs.dataFileRaw}`);
  if (fs.compat !== '0.10') lines.push(`corrupt: ${fs.corrupt}`, `extended l2: ${fs.extendedL2}`);
  return { names, info, specific: lines };
}
