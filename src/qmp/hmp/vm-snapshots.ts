/**
 * savevm, loadvm, delvm and `info snapshots` over the internal snapshots
 * of every writable drive (QEMU's migration/savevm.c and block/snapshot.c
 * "bdrv_all_*" operations), in QEMU's order and words.
 *
 * blockemu has no guest, so a VM state is empty: savevm writes each
 * snapshot with a VM state size of 0 (qemu-img and `info snapshots` show
 * "0 B"), and loadvm reverts the disks without refusing such a snapshot as
 * disk-only (QEMU refuses; here there is no state a snapshot could lack).
 */
import type { BlockNode } from '../../blockdev/node.js';
import { canSnapshot, createInternalSnapshot, deleteInternalSnapshot, gotoInternalSnapshot, snapshotNode } from '../../blockdev/internal-snapshots.js';
import { listSnapshots, type Qcow2Snapshot } from '../../image/qcow2/snapshots.js';
import { NO_ICOUNT } from '../../image/qcow2/snapshot-table.js';
import { SNAPSHOT_TITLES, snapshotRow } from '../../image/qcow2/snapshot-dump.js';
import type { HmpArgs } from './args.js';
import type { QmpContext } from '../context.js';
import { HmpCommandError, type HmpContext } from './command.js';


interface Disk {
  bs: BlockNode;
  /** bdrv_get_device_or_node_name. */
  name: string;
  /** bdrv_all_snapshots_includes_bs: writable, and a BlockBackend's or no one's child. */
  included: boolean;
}

/** What the snapshot operations look at: every disk, and the machine they stop while they work. */
export type SnapshotScope = Pick<QmpContext, 'graph' | 'exports' | 'machine'>;

/** bdrv_first/bdrv_next: the BlockBackends' roots, then the monitor's nodes no BlockBackend uses. */
function allDisks(scope: SnapshotScope): Disk[] {
  const graph = scope.graph;
  const backends = graph.backends.list();
  // blk_next walks every BlockBackend, an export's too (after the drives and devices: created later).
  const roots = [...backends.flatMap((b) => (b.node ? [b.node] : [])), ...scope.exports.list().map((e) => e.node)];
  const withBlk = new Set(roots);
  const seen = new Set<BlockNode>();
  const out: Disk[] = [];
  const add = (bs: BlockNode) => {
    if (seen.has(bs)) return;
    seen.add(bs);
    const name = graph.backends.deviceOrNodeName(bs);
    out.push({ bs, name, included: !bs.ejected && !bs.readOnly && (withBlk.has(bs) || bs.parents.length === 0) });
  };
  for (const n of roots) add(n);
  for (const n of graph.monitorOwnedNodes()) if (!withBlk.has(n)) add(n);
  return out;
}

function checkAllCanSnapshot(disks: readonly Disk[]): void {
  for (const d of disks) if (d.included && !canSnapshot(d.bs)) throw new HmpCommandError(`Device '${d.name}' is writable but does not support snapshots`);
}

function findVmstateDisk(disks: readonly Disk[]): Disk {
  const d = disks.find((x) => x.included && canSnapshot(x.bs));
  if (!d) throw new HmpCommandError('no block device can store vmstate for snapshot');
  return d;
}

const snapshotsOf = (d: Disk) => listSnapshots(snapshotNode(d.bs)!.image);
// bdrv_snapshot_find looks snapshots up by name only.
const matches = (sn: Qcow2Snapshot, name: string) => sn.name === name;

/** bdrv_all_delete_snapshot: every snapshot of that id or name, on every included disk. */
async function deleteAll(disks: readonly Disk[], name: string): Promise<void> {
  for (const d of disks) {
    if (!d.included || !canSnapshot(d.bs)) continue;
    const node = snapshotNode(d.bs)!;
    const img = node.image;
    for (let sn = (await listSnapshots(img)).find((s) => matches(s, name)); sn; sn = (await listSnapshots(img)).find((s) => matches(s, name))) {
      try {
        await deleteInternalSnapshot(node, sn.id, sn.name);
      } catch (err) {
        throw new HmpCommandError(`Could not delete snapshot '${name}' on '${d.name}': ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
  }
}

/** bdrv_all_has_snapshot: whether every included disk has it. */
async function allHave(disks: readonly Disk[], name: string): Promise<boolean> {
  for (const d of disks) if (d.included && canSnapshot(d.bs) && !(await snapshotsOf(d)).some((s) => matches(s, name))) return false;
  return true;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** `savevm [tag]` (save_snapshot with overwrite): an old snapshot of that name goes first. */
export async function savevm(ctx: HmpContext, a: HmpArgs): Promise<void> {
  const disks = allDisks(ctx.qmp);
  checkAllCanSnapshot(disks);
  let name = a['name'] as string | undefined;
  if (name !== undefined) await deleteAll(disks, name);
  findVmstateDisk(disks);
  const now = Date.now();
  const t = new Date(now);
  name ??= `vm-${t.getFullYear()}${pad(t.getMonth() + 1)}${pad(t.getDate())}${pad(t.getHours())}${pad(t.getMinutes())}${pad(t.getSeconds())}`;
  const machine = ctx.qmp.machine;
  const wasRunning = machine?.running ?? false;
  if (wasRunning) machine!.stop();
  try {
    for (const d of disks) {
      if (!d.included || !canSnapshot(d.bs)) continue;
      const node = snapshotNode(d.bs)!;
      try {
        await node.flush();
        // No guest, so no VM clock and no recorded icount (-1, which leaves ICOUNT empty).
        await createInternalSnapshot(node, { name, dateSec: Math.floor(now / 1000), dateNsec: (now % 1000) * 1_000_000, vmClockNsec: 0n, icount: NO_ICOUNT });
      } catch (err) {
        await deleteAll(disks, name).catch(() => undefined);
        throw new HmpCommandError(`Could not create snapshot '${name}' on '${d.name}'`, { cause: err });
      }
    }
  } finally {
    if (wasRunning) machine!.cont();
  }
}

/** `loadvm tag` (load_snapshot): every included disk goes back to the snapshot. */
export function loadvm(ctx: HmpContext, a: HmpArgs): Promise<void> {
  return loadSnapshotAll(ctx.qmp, a['name'] as string);
}

/** load_snapshot, for `loadvm` and for qemu-system's -loadvm at start. */
export async function loadSnapshotAll(scope: SnapshotScope, name: string): Promise<void> {
  const disks = allDisks(scope);
  checkAllCanSnapshot(disks);
  if (!(await allHave(disks, name))) throw new HmpCommandError(`Snapshot '${name}' does not exist in one or more devices`);
  findVmstateDisk(disks);
  const machine = scope.machine;
  const wasRunning = machine?.running ?? false;
  if (wasRunning) machine!.stop();
  for (const d of disks) {
    if (!d.included || !canSnapshot(d.bs)) continue;
    const node = snapshotNode(d.bs)!;
    try {
      await node.flush();
      await gotoInternalSnapshot(node, name);
    } catch (err) {
      throw new HmpCommandError(`Could not load snapshot '${name}' on '${d.name}': ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
  if (wasRunning) machine!.cont();
}

/** `delvm tag` (delete_snapshot). */
export async function delvm(ctx: HmpContext, a: HmpArgs): Promise<void> {
  const disks = allDisks(ctx.qmp);
  checkAllCanSnapshot(disks);
  await deleteAll(disks, a['name'] as string);
}

/** `info snapshots` (hmp_info_snapshots): those on every disk, then each disk's partial ones. */
export async function infoSnapshots(ctx: HmpContext): Promise<void> {
  const disks = allDisks(ctx.qmp);
  let vm: Disk;
  try {
    vm = findVmstateDisk(disks);
  } catch (err) {
    // error_report_err, not hmp_handle_error: no "Error: ".
    ctx.out(`${(err as Error).message}\n`);
    return;
  }
  const table = await snapshotsOf(vm);
  const perDisk: Array<{ name: string; snapshots: Qcow2Snapshot[] }> = [];
  for (const d of disks) {
    if (!canSnapshot(d.bs)) continue;
    const list = await snapshotsOf(d);
    if (list.length > 0) perDisk.push({ name: ctx.qmp.graph.backends.deviceName(d.bs), snapshots: list });
  }
  if (perDisk.length === 0) return ctx.out('There is no snapshot available.\n');
  const global: Qcow2Snapshot[] = [];
  for (const sn of table) {
    if (!(await allHave(disks, sn.name))) continue;
    global.push(sn);
    for (const e of perDisk) e.snapshots = e.snapshots.filter((s) => s.name !== sn.name);
  }
  ctx.out('List of snapshots present on all disks:\n');
  if (global.length > 0) ctx.out(`${SNAPSHOT_TITLES}\n${global.map((sn) => `${snapshotRow({ ...sn, id: '--' })}\n`).join('')}`);
  else ctx.out('None\n');
  for (const e of perDisk) {
    if (e.snapshots.length === 0) continue;
    ctx.out(`\nList of partial (non-loadable) snapshots on '${e.name}':\n${SNAPSHOT_TITLES}\n${e.snapshots.map((sn) => `${snapshotRow(sn)}\n`).join('')}`);
  }
}
