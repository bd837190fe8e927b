import type { BlockGraph } from '../../blockdev/graph.js';
import { BlockBackend } from '../../blockdev/block-backend.js';
import type { BlockNode } from '../../blockdev/node.js';
import { type QemuIoTarget, runQemuIoCommand } from '../../blockdev/qemu-io/index.js';
import { BlockError } from '../../image/errors.js';
import { PERM_ALL, PERM_WRITE } from '../../image/perm.js';
import type { HmpArgs } from './args.js';
import { HmpCommandError, type HmpContext } from './command.js';

/** The BlockBackend hmp_qemu_io runs on: a -drive's by name, a device's by its id (-d), else one of its own on a node. */
function qemuIoBackend(graph: BlockGraph, device: string, qdev: boolean): { blk: BlockBackend; node: BlockNode | undefined; local: boolean } | string {
  const backends = graph.backends;
  if (qdev) {
    // blk_by_qdev_id: the device, then the BlockBackend attached to it (a virtio-blk-pci's is its virtio-backend's).
    const b = backends.byQdev(device);
    if (b === 'no-backend') return 'Device does not have a block device backend';
    if (!b) return `Device '${device}' not found`;
    return { blk: b.blk, node: b.node, local: false };
  }
  const b = backends.byName(device);
  if (b) return { blk: b.blk, node: b.node, local: false };
  const node = graph.get(device);
  // bdrv_lookup_bs(NULL, device)'s words (the name was tried as a BlockBackend first).
  if (!node) return `Cannot find device='' nor node-name='${device}'`;
  // A BlockBackend of its own, taking nothing until a command writes (hmp_qemu_io's local_blk; qemu-io's command() asks for write).
  return { blk: new BlockBackend({ perm: 0, shared: PERM_ALL }), node, local: true };
}

/**
 * `qemu-io [-d] device "command"` (hmp_qemu_io). Its command's output is
 * qemu-io's printf: qemu-system writes it to its stdout (a QMP
 * human-monitor-command answers "", as the iotests' reference outputs
 * have); the storage daemon, which has no HMP in QEMU, answers with it as
 * blockemu's extension.
 */
export async function hmpQemuIo(ctx: HmpContext, a: HmpArgs): Promise<void> {
  const device = a['device'] as string;
  const cmd = a['command'] as string;
  const found = qemuIoBackend(ctx.qmp.graph, device, a['qdev'] === true);
  if (typeof found === 'string') throw new HmpCommandError(found);
  const { blk, node, local } = found;
  if (local) {
    try {
      await blk.insert(node!);
    } catch (err) {
      throw new HmpCommandError(err instanceof Error ? err.message : String(err), { cause: err });
    }
  }
  try {
    const r = await runQemuIoCommand(cmd, node ? backendTarget(blk, node) : NO_MEDIUM);
    if (ctx.qmp.machine) {
      // qemu-io's printf goes to the process's stdout, its fprintf(stderr) to stderr, its error_report (a refused
      // permission) to the monitor (iotest 249).
      for (const c of r.chunks) {
        if (c.report) ctx.out(c.text);
        else (c.stream === 'stdout' ? process.stdout : process.stderr).write(c.text);
      }
    } else ctx.out(r.text);
  } finally {
    if (local) await blk.remove();
  }
}

/** A BlockBackend without a medium: every request fails with ENOMEDIUM. */
const noMedium = (): Promise<never> => Promise.reject(new BlockError('IO', 'No medium found', { errno: 'ENOMEDIUM' }));
const NO_MEDIUM: QemuIoTarget = {
  size: () => Number.MAX_SAFE_INTEGER,
  read: noMedium,
  write: noMedium,
  writeZeroes: noMedium,
  discard: noMedium,
  flush: noMedium,
  blockStatus: noMedium,
};

/** The node as qemu-io sees it through `blk`: the node's I/O, and write permission asked of the BlockBackend when a command writes. */
function backendTarget(blk: BlockBackend, node: BlockNode): QemuIoTarget {
  return {
    get readOnly() {
      return node.readOnly;
    },
    async acquireWrite() {
      const p = blk.perm;
      if (p.perm & PERM_WRITE) return undefined;
      try {
        await blk.setPerm({ perm: p.perm | PERM_WRITE, shared: p.shared });
        return undefined;
      } catch (err) {
        return err instanceof Error ? err.message : String(err);
      }
    },
    size: () => node.size(),
    // Through the BlockBackend, so its I/O limits apply (blk_pread/blk_pwrite).
    read: (o, l) => blk.read(o, l),
    write: (o, d, f) => blk.write(o, d, f),
    writeZeroes: (o, l, f) => blk.writeZeroes(o, l, f),
    discard: (o, l) => node.discard(o, l),
    flush: () => node.flush(),
    blockStatus: (o, l) => node.blockStatus(o, l),
    // Every node takes a compressed write; a driver without compression answers ENOTSUP, as in QEMU.
    writeCompressed: (o, d) => node.writeCompressed(o, d),
    ...(typeof (node as { info?: unknown }).info === 'function' ? { info: () => (node as unknown as Required<QemuIoTarget>).info() } : {}),
  };
}

