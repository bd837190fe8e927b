import { errnoOf, strerrorOf } from '../errno.js';
import { BlockError } from '../errors.js';
import { Qcow2Corruption } from './corruption.js';
import { MAX_L1_BYTES, MAX_SNAPSHOTS, snapshotL1Problem } from './header.js';
import type { Qcow2Image } from './image.js';
import { growL1 } from './resize.js';
import { updateSnapshotRefcount } from './snapshot-refcount.js';
import { freeClustersNow, loadSnapshotTable, type Qcow2Snapshot, readSnapshotTable, writeSnapshotTable } from './snapshot-table.js';

export type { Qcow2Snapshot } from './snapshot-table.js';

/**
 * Internal snapshots of a qcow2 image (block/qcow2-snapshot.c): a snapshot
 * is a copy of the active L1 table plus one more reference on every
 * cluster it reaches, so later writes copy instead of overwriting. Each
 * operation orders its writes as QEMU does: references are added before
 * anything on disk names the new table, and dropped only after nothing
 * does, so a crash leaves at worst leaked clusters.
 */

/** The snapshots the image's table lists, in table order. */
export function listSnapshots(img: Qcow2Image): Promise<Qcow2Snapshot[]> {
  // qcow2_snapshot_list fails with ENOTSUP, which every lister takes as no snapshots.
  if (img.externalData) return Promise.resolve([]);
  return readSnapshotTable(img);
}

/** An image with an external data file has no internal snapshots: each operation fails with ENOTSUP, as QEMU's do. */
function noDataFile(img: Qcow2Image): void {
  if (img.externalData) throw errno('ENOTSUP', 'Operation not supported');
}

const errno = (code: 'ENOENT' | 'EFBIG' | 'ENOTSUP' | 'EBUSY' | 'EINVAL', message: string) =>
  new BlockError(code === 'ENOENT' ? 'NOT_FOUND' : code === 'ENOTSUP' ? 'UNSUPPORTED' : 'INVALID_ARGUMENT', message, { errno: code });

/** find_new_snapshot_id: one more than the largest id read as a number (strtoul: leading digits, else 0). */
function newSnapshotId(list: readonly Qcow2Snapshot[]): string {
  let max = 0n;
  for (const sn of list) {
    const m = /^\s*\+?(\d+)/.exec(sn.id);
    const id = m ? BigInt(m[1]!) : 0n;
    if (id > max) max = id;
  }
  return String(max + 1n);
}

export interface NewSnapshot {
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNsec?: bigint;
  /** qemu-img leaves it 0 (its QEMUSnapshotInfo is zeroed), QMP's internal snapshots -1. */
  icount?: bigint;
}

/** qcow2_snapshot_create: the active L1 copied into fresh clusters, every reference counted once more, then the entry appended. */
export async function createSnapshot(img: Qcow2Image, info: NewSnapshot): Promise<Qcow2Snapshot> {
  const { snapshots: list, bytes } = await loadSnapshotTable(img);
  if (list.length >= MAX_SNAPSHOTS) throw errno('EFBIG', 'File too large');
  noDataFile(img);
  const rc = img.refcounts!;
  const cs = img.layout.clusterSize;
  // The copy is of the tables as they are on disk.
  await img.flush();
  const l1Size = img.header.l1Size;
  const clusters = Math.ceil((l1Size * 8) / cs);
  const l1Offset = clusters > 0 ? (await img.meta.run(() => rc.allocate(clusters))) * cs : 0;
  await img.flush();
  await img.file.write(l1Offset, img.l1.slice(0, l1Size * 8));
  await img.file.flush();
  await updateSnapshotRefcount(img, img.header.l1TableOffset, l1Size, 1);
  const sn: Qcow2Snapshot = {
    l1Offset,
    l1Size,
    id: newSnapshotId(list),
    name: info.name,
    dateSec: info.dateSec,
    dateNsec: info.dateNsec,
    vmClockNsec: info.vmClockNsec ?? 0n,
    vmStateSize: 0n,
    diskSize: BigInt(Math.ceil(img.size() / 512) * 512),
    icount: info.icount ?? 0n,
    extraDataSize: 24,
    unknownExtra: new Uint8Array(0),
  };
  await writeSnapshotTable(img, [...list, sn], bytes);
  return sn;
}

function checkL1(img: Qcow2Image, sn: Qcow2Snapshot): void {
  // qcow2_validate_table's checks on a snapshot's L1 table.
  if (sn.l1Size * 8 > MAX_L1_BYTES) throw errno('EFBIG', 'Snapshot L1 table too large');
  if (sn.l1Offset % img.layout.clusterSize !== 0) throw errno('EINVAL', 'Snapshot L1 table offset invalid');
}

/**
 * qcow2_snapshot_goto by id, else by name: the image takes the snapshot's
 * size, the snapshot's tables gain a reference, the active L1 is
 * overwritten with the snapshot's, and the old active tables lose theirs.
 * Errors carry QEMU's errno (ENOENT when no snapshot matches).
 */
export async function gotoSnapshot(img: Qcow2Image, idOrName: string, opts: { rangesHeld?: boolean } = {}): Promise<void> {
  noDataFile(img);
  const list = await readSnapshotTable(img);
  const sn = list.find((s) => s.id === idOrName) ?? list.find((s) => s.name === idOrName);
  if (!sn) throw errno('ENOENT', 'No such file or directory');
  try {
    checkL1(img, sn);
  } catch (err) {
    // qcow2_snapshot_goto reports the table's fault itself (error_report_err) and fails with the errno alone.
    Qcow2Corruption.warn(`${Qcow2Corruption.reportPrefix}${(err as Error).message}\n`);
    throw err;
  }
  await img.flush();
  if (Number(sn.diskSize) !== Math.ceil(img.size() / 512) * 512) await img.resize(Number(sn.diskSize), { rangesHeld: opts.rangesHeld });
  if (sn.l1Size > img.header.l1Size) await img.meta.run(() => growL1(img, img.refcounts!, sn.l1Size));
  const curSize = img.header.l1Size;
  const snL1 = new Uint8Array(curSize * 8);
  if (sn.l1Size > 0) snL1.set(await img.file.read(sn.l1Offset, sn.l1Size * 8));
  await updateSnapshotRefcount(img, sn.l1Offset, sn.l1Size, 1);
  await img.file.write(img.header.l1TableOffset, snL1);
  await img.file.flush();
  // The in-memory L1 is still the old one: its references go.
  try {
    await updateSnapshotRefcount(img, img.header.l1TableOffset, curSize, -1);
  } finally {
    img.l1.set(snL1);
  }
  await updateSnapshotRefcount(img, img.header.l1TableOffset, curSize, 0);
}

/**
 * qcow2_snapshot_load_tmp: a read-only image reads what the snapshot holds
 * from now on (`qemu-img convert -l`): the snapshot's L1 table replaces the
 * active one in memory only; the virtual size stays the image's. With both
 * `id` and `name` the snapshot must match both.
 */
export async function loadSnapshotTmp(img: Qcow2Image, id: string | undefined, name: string | undefined): Promise<void> {
  const list = await readSnapshotTable(img);
  const sn =
    id !== undefined && name !== undefined
      ? list.find((s) => s.id === id && s.name === name)
      : id !== undefined
        ? list.find((s) => s.id === id)
        : list.find((s) => s.name === name);
  if (!sn) throw errno('ENOENT', "Can't find snapshot");
  // qcow2_validate_table's words, without the file name.
  const bad = snapshotL1Problem(sn.l1Offset, sn.l1Size, img.layout.clusterSize);
  if (bad) throw errno(bad.errno, bad.message);
  const l1 = sn.l1Size > 0 ? await img.file.read(sn.l1Offset, sn.l1Size * 8) : new Uint8Array(0);
  img.adoptL1(l1, sn.l1Offset);
}

/** The first snapshot named `name` (bdrv_snapshot_find: by name only). */
export async function findSnapshotByName(img: Qcow2Image, name: string): Promise<Qcow2Snapshot | undefined> {
  return (await readSnapshotTable(img)).find((s) => s.name === name);
}

/** qcow2_snapshot_delete of the snapshot with this id and name: out of the table first, then its references and L1 table dropped. */
export async function deleteSnapshot(img: Qcow2Image, id: string, name: string): Promise<void> {
  noDataFile(img);
  const { snapshots: list, bytes } = await loadSnapshotTable(img);
  const index = list.findIndex((s) => s.id === id && s.name === name);
  if (index < 0) throw errno('ENOENT', "Can't find the snapshot");
  const sn = list[index]!;
  checkL1(img, sn);
  await img.flush();
  // Each step's failure in QEMU's words (error_setg_errno): the caller puts "Could not delete snapshot 'x': " before.
  const step =
    (what: string) =>
    (err: unknown): never => {
      throw new BlockError('IO', `${what}: ${strerrorOf(err)}`, { errno: errnoOrEio(err), cause: err });
    };
  await writeSnapshotTable(
    img,
    list.filter((_, i) => i !== index),
    bytes,
  ).catch(step('Failed to remove snapshot from snapshot list'));
  // From here a failure leaks clusters at worst: the snapshot is gone from the table.
  await updateSnapshotRefcount(img, sn.l1Offset, sn.l1Size, -1).catch(step('Failed to free the cluster and L1 table'));
  const cs = img.layout.clusterSize;
  const first = Math.floor(sn.l1Offset / cs);
  for (let c = first; c < Math.ceil((sn.l1Offset + sn.l1Size * 8) / cs); c++) img.refcounts!.free(c);
  await freeClustersNow(img);
  await updateSnapshotRefcount(img, img.header.l1TableOffset, img.header.l1Size, 0).catch(step('Failed to update snapshot status in disk'));
}

function errnoOrEio(err: unknown): string {
  try {
    return errnoOf(err);
  } catch {
    return 'EIO';
  }
}
