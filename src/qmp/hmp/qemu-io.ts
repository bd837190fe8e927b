import type { BlockGraph } from '../../blockdev/graph.js';
import { BlockBackend } from '../../blockdev/block-backend.js';
import type { BlockNode } from '../../blockdev/node.js';
import { backendTarget, type OutputChunk, type QemuIoTarget, runQemuIoCommand } from '../../blockdev/qemu-io/index.js';
import { BlockError } from '../../image/errors.js';
import { PERM_ALL } from '../../image/perm.js';
import { reopenContext } from '../commands/reopen.js';
import type { HmpArgs } from './args.js';
import { HmpCommandError, type HmpContext } from './command.js';

/** The BlockBackend hmp_qemu_io runs on: a -drive's by name, a device's by its id (-d), else one of its own on a node. */
function qemuIoBackend(graph: BlockGraph, device: string, qdev: boolean): { blk: BlockBackend; node: BlockNode | undefined; local: boolean; attached?: boolean } | string {
  const backends = graph.backends;
  if (qdev) {
    // blk_by_qdev_id: the device, then the BlockBackend attached to it (a virtio-blk-pci's is its virtio-backend's).
    const b = backends.byQdev(device);
    if (b === 'no-backend') return 'Device does not have a block device backend';
    if (!b) return `Device '${device}' not found`;
    return { blk: b.blk, node: b.node, local: false, attached: true };
  }
  const b = backends.byName(device);
  if (b) return { blk: b.blk, node: b.node, local: false, attached: b.device !== undefined };
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
  const { blk, node, local, attached } = found;
  if (local) {
    try {
      await blk.insert(node!);
    } catch (err) {
      throw new HmpCommandError(err instanceof Error ? err.message : String(err), { cause: err });
    }
  }
  try {
    // qemu-io's printf goes to the process's stdout, its fprintf(stderr) to stderr, its error_report (a refused
    // permission) to the monitor (iotest 249).
    const toProcess = (chunks: readonly OutputChunk[]) => {
      for (const c of chunks) (c.stream === 'stdout' ? process.stdout : process.stderr).write(c.text);
    };
    // A request held at a blkdebug breakpoint reports when a later command resumes it: to qemu-system's stdout, as QEMU's printf.
    const late = ctx.qmp.machine ? toProcess : undefined;
    const r = await runQemuIoCommand(cmd, node ? backendTarget(blk, node, { reopen: reopenContext(ctx.qmp), deviceAttached: attached === true }) : NO_MEDIUM, { late });
    if (ctx.qmp.machine) {
      for (const c of r.chunks) {
        if (c.report) ctx.out(c.text);
        else toProcess([c]);
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
