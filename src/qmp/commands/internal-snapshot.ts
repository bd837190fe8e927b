/**
 * Internal snapshots over QMP (blockdev.c): blockdev-snapshot-internal-sync,
 * as a command and a transaction action whose abort deletes the snapshot
 * again, and blockdev-snapshot-delete-internal-sync. Checks and messages
 * are QEMU's, in its order.
 */
import { createInternalSnapshot, deleteInternalSnapshot, snapshotNode } from '../../blockdev/internal-snapshots.js';
import type { Qcow2Node } from '../../blockdev/drivers/qcow2.js';
import { strerrorOf } from '../../image/errno.js';
import { listSnapshots, type Qcow2Snapshot } from '../../image/qcow2/snapshots.js';
import { NO_ICOUNT } from '../../image/qcow2/snapshot-table.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { type BlockdevSnapshotInternal, blockdevSnapshotDeleteInternalSync } from '../schema/block-core/snapshot-args.js';
import type { Infer } from '../schema/types.js';
import type { SnapshotInfo } from '../schema/block-core/node-info.js';
import { rootNode } from './backing.js';
import { checkInternalSnapshot } from './snapshot.js';

const fail = (desc: string) => new QmpError('GenericError', desc);

/** A snapshot taken by prepare, which abort deletes. */
export interface PreparedInternalSnapshot {
  node: Qcow2Node;
  device: string;
  sn: Qcow2Snapshot;
}

/**
 * internal_snapshot_prepare: QEMU's checks, a name no snapshot of the
 * device has, then the snapshot, dated now. Its VM clock: qemu-storage-
 * daemon's virtual clock is the host's real time; a `blockemu system`
 * machine has no guest whose clock would move (0, as savevm records).
 */
export async function prepareInternalSnapshot(ctx: QmpContext, d: Infer<typeof BlockdevSnapshotInternal>): Promise<PreparedInternalSnapshot> {
  const node = snapshotNode(checkInternalSnapshot(ctx, d))!;
  if ((await listSnapshots(node.image)).some((s) => s.name === d.name)) throw fail(`Snapshot with name '${d.name}' already exists on device '${d.device}'`);
  const nowUs = Math.round((performance.timeOrigin + performance.now()) * 1000);
  try {
    const sn = await createInternalSnapshot(node, {
      name: d.name,
      dateSec: Math.floor(nowUs / 1e6),
      dateNsec: (nowUs % 1e6) * 1000,
      vmClockNsec: ctx.machine ? 0n : BigInt(nowUs) * 1000n,
      icount: NO_ICOUNT,
    });
    return { node, device: d.device, sn };
  } catch (err) {
    throw fail(`Failed to create snapshot '${d.name}' on device '${d.device}': ${strerrorOf(err)}`);
  }
}

/** internal_snapshot_abort: the snapshot goes again; a failure is only reported (QEMU's error_report). */
export async function abortInternalSnapshot(p: PreparedInternalSnapshot): Promise<void> {
  try {
    await deleteInternalSnapshot(p.node, p.sn.id, p.sn.name);
  } catch (err) {
    p.node.errorReport(`Failed to delete snapshot with id '${p.sn.id}' and name '${p.sn.name}' on device '${p.device}' in abort: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** qmp_blockdev_snapshot_delete_internal_sync: the snapshot matching the id and/or name, deleted; what it was, returned. */
export async function blockdevSnapshotDeleteInternal(ctx: QmpContext, a: { device: string; id?: string; name?: string }): Promise<Infer<typeof SnapshotInfo>> {
  const bs = rootNode(ctx, a.device);
  if (a.id === undefined && a.name === undefined) throw fail('Name or id must be provided');
  bs.blockers.check(ctx.graph.backends.deviceOrNodeName(bs), 'internal-snapshot-delete');
  const node = snapshotNode(bs);
  // bdrv_snapshot_find_by_id_and_name: a node without snapshots cannot list them.
  if (!node) throw fail('Failed to get a snapshot list: Operation not supported');
  const sn = (await listSnapshots(node.image)).find((s) => (a.id === undefined || s.id === a.id) && (a.name === undefined || s.name === a.name));
  if (!sn) throw fail(`Snapshot with id '${a.id ?? 'null'}' and name '${a.name ?? 'null'}' does not exist on device '${a.device}'`);
  try {
    await deleteInternalSnapshot(node, sn.id, sn.name);
  } catch (err) {
    throw fail(err instanceof Error ? err.message : String(err));
  }
  return {
    id: sn.id,
    name: sn.name,
    'vm-state-size': Number(sn.vmStateSize),
    'date-sec': sn.dateSec,
    'date-nsec': sn.dateNsec,
    'vm-clock-sec': Number(sn.vmClockNsec / 1_000_000_000n),
    'vm-clock-nsec': Number(sn.vmClockNsec % 1_000_000_000n),
    ...(sn.icount !== NO_ICOUNT ? { icount: Number(sn.icount) } : {}),
  };
}

export function addInternalSnapshotCommands(t: CommandTable<QmpContext>): void {
  t.add(blockdevSnapshotDeleteInternalSync, (a, ctx) => blockdevSnapshotDeleteInternal(ctx, a));
}
