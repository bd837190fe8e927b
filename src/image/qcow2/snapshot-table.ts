import { strerrorOf } from '../errno.js';
import { BlockError } from '../errors.js';
import { Qcow2Corruption } from './corruption.js';
import { MAX_SNAPSHOTS } from './header.js';
import type { Qcow2Image } from './image.js';

/** One internal snapshot as the table stores it (QEMU's QCowSnapshot). */
export interface Qcow2Snapshot {
  l1Offset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  vmStateSize: bigint;
  diskSize: bigint;
  /** -1 (all ones) when the snapshot recorded no instruction count. */
  icount: bigint;
  /** Extra data as stored (at least the 24 known bytes once written back). */
  extraDataSize: number;
  /** Extra data past the known fields, kept and written back unchanged. */
  unknownExtra: Uint8Array;
}

const ENTRY_HEADER = 40;
const KNOWN_EXTRA = 24;
const MAX_EXTRA_DATA = 1024;
/** QCOW_MAX_SNAPSHOTS_SIZE: the whole table. */
const MAX_TABLE_BYTES = 1024 * MAX_SNAPSHOTS;
export const NO_ICOUNT = (1n << 64n) - 1n;
const roundUp8 = (v: number) => Math.ceil(v / 8) * 8;
const utf8 = new TextDecoder();

/** C strings: the bytes up to a NUL. */
function cString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return utf8.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

/**
 * qcow2_read_snapshots: the variable-length entries, each 8-byte aligned.
 * A table QEMU would refuse to open is refused with its words (the check
 * reads damaged tables its own way, check-snapshots.ts).
 */
export async function readSnapshotTable(img: Qcow2Image): Promise<Qcow2Snapshot[]> {
  return (await loadSnapshotTable(img)).snapshots;
}

/** The snapshots and the bytes their table occupies on disk (what freeing it frees). */
export async function loadSnapshotTable(img: Qcow2Image): Promise<{ snapshots: Qcow2Snapshot[]; bytes: number }> {
  const h = img.header;
  const out: Qcow2Snapshot[] = [];
  if (h.nbSnapshots === 0) return { snapshots: out, bytes: 0 };
  let off = h.snapshotsOffset;
  for (let i = 0; i < h.nbSnapshots; i++) {
    off = roundUp8(off);
    const head = new DataView((await img.file.read(off, ENTRY_HEADER)).buffer);
    off += ENTRY_HEADER;
    const idSize = head.getUint16(12);
    const nameSize = head.getUint16(14);
    const extra = head.getUint32(36);
    if (extra > MAX_EXTRA_DATA) {
      throw new BlockError('INVALID_IMAGE', `Could not open '${img.filename}': Too much extra metadata in snapshot table entry ${i}`, {
        errno: 'EFBIG',
        hint: 'You can force-remove this extra metadata with qemu-img check -r all',
      });
    }
    const extraBytes = extra > 0 ? await img.file.read(off, extra) : new Uint8Array(0);
    const ev = new DataView(extraBytes.buffer, extraBytes.byteOffset, extraBytes.length);
    off += extra;
    const id = cString(await img.file.read(off, idSize));
    off += idSize;
    const name = cString(await img.file.read(off, nameSize));
    off += nameSize;
    if (off - h.snapshotsOffset > MAX_TABLE_BYTES) {
      throw new BlockError('INVALID_IMAGE', `Could not open '${img.filename}': Snapshot table is too big`, {
        errno: 'EFBIG',
        hint: `You can force-remove all ${h.nbSnapshots - i} overhanging snapshots with qemu-img check -r all`,
      });
    }
    out.push({
      l1Offset: Number(head.getBigUint64(0)),
      l1Size: head.getUint32(8),
      id,
      name,
      dateSec: head.getUint32(16),
      dateNsec: head.getUint32(20),
      vmClockNsec: head.getBigUint64(24),
      vmStateSize: extra >= 8 ? ev.getBigUint64(0) : BigInt(head.getUint32(32)),
      // Version 2 entries may lack it: the image's size then.
      diskSize: extra >= 16 ? ev.getBigUint64(8) : BigInt(Math.floor(h.size / 512) * 512),
      icount: extra >= 24 ? ev.getBigUint64(16) : NO_ICOUNT,
      extraDataSize: extra,
      unknownExtra: extra > KNOWN_EXTRA ? extraBytes.slice(KNOWN_EXTRA) : new Uint8Array(0),
    });
  }
  return { snapshots: out, bytes: off - h.snapshotsOffset };
}

/** One entry laid out as qcow2_write_snapshots lays it out. */
function encodeEntry(sn: Qcow2Snapshot): Uint8Array {
  const id = new TextEncoder().encode(sn.id);
  const name = new TextEncoder().encode(sn.name);
  const extra = Math.max(KNOWN_EXTRA, sn.extraDataSize);
  const out = new Uint8Array(ENTRY_HEADER + extra + id.length + name.length);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, BigInt(sn.l1Offset));
  v.setUint32(8, sn.l1Size);
  v.setUint16(12, id.length);
  v.setUint16(14, name.length);
  v.setUint32(16, sn.dateSec);
  v.setUint32(20, sn.dateNsec);
  v.setBigUint64(24, sn.vmClockNsec);
  // A VM state too large for 32 bits reads as "no VM state" to old readers.
  v.setUint32(32, sn.vmStateSize <= 0xffffffffn ? Number(sn.vmStateSize) : 0);
  v.setUint32(36, extra);
  v.setBigUint64(40, sn.vmStateSize);
  v.setBigUint64(48, sn.diskSize);
  v.setBigUint64(56, BigInt.asUintN(64, sn.icount));
  let pos = ENTRY_HEADER + KNOWN_EXTRA;
  out.set(sn.unknownExtra.subarray(0, extra - KNOWN_EXTRA), pos);
  pos += extra - KNOWN_EXTRA;
  out.set(id, pos);
  out.set(name, pos + id.length);
  return out;
}

/**
 * qcow2_write_snapshots: the whole table written anew into fresh clusters
 * (counted and on disk first), then the header's count and offset switched
 * to it in one 12-byte write, then the old table's clusters freed. A crash
 * at any point leaves the old table or the new one, and at worst leaks.
 * Call with the image's metadata written (no dirty caches).
 */
export async function writeSnapshotTable(img: Qcow2Image, list: readonly Qcow2Snapshot[], oldBytes: number): Promise<void> {
  const rc = img.refcounts!;
  const cs = img.layout.clusterSize;
  const entries = list.map(encodeEntry);
  let size = 0;
  const starts: number[] = [];
  for (const e of entries) {
    size = roundUp8(size);
    starts.push(size);
    size += e.length;
    if (size > MAX_TABLE_BYTES) throw new BlockError('INVALID_ARGUMENT', 'File too large', { errno: 'EFBIG' });
  }
  const clusters = Math.ceil(size / cs);
  const offset = clusters > 0 ? (await img.meta.run(() => rc.allocate(clusters))) * cs : 0;
  await img.flush();
  for (let i = 0; i < entries.length; i++) await img.file.write(offset + starts[i]!, entries[i]!);
  await img.file.flush();
  const hdr = new Uint8Array(12);
  const hv = new DataView(hdr.buffer);
  hv.setUint32(0, list.length);
  hv.setBigUint64(4, BigInt(offset));
  await img.file.write(60, hdr);
  await img.file.flush();
  const old = { offset: img.header.snapshotsOffset, nb: img.header.nbSnapshots, size: oldBytes };
  img.noteSnapshotTable(list.length, offset, size, list.map((sn) => ({ offset: sn.l1Offset, bytes: sn.l1Size * 8 })));
  if (old.nb > 0 && old.offset !== 0) {
    const first = Math.floor(old.offset / cs);
    const n = Math.max(1, Math.ceil((old.offset + old.size) / cs) - first);
    for (let c = 0; c < n; c++) rc.free(first + c);
    await freeClustersNow(img);
  }
}

/**
 * qcow2_free_clusters as QEMU calls it while deleting a snapshot: the frees
 * just queued are applied, and a failure is printed, not returned (QEMU's
 * "qcow2_free_clusters failed: …" on stderr; the clusters stay counted, a
 * leak at worst).
 */
export async function freeClustersNow(img: Qcow2Image): Promise<void> {
  await img.flush().catch((err: unknown) => Qcow2Corruption.warn(`qcow2_free_clusters failed: ${strerrorOf(err)}\n`));
}
