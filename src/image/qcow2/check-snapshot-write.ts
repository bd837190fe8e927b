import { type CheckState, isErr } from './check-state.js';
import { StoredRefcounts } from './check-stored.js';
import { strerror } from './check-types.js';
import type { Ret } from './check-walk.js';

const SNAPSHOT_HEADER = 40;
const KNOWN_EXTRA = 24;
const MAX_TABLE_BYTES = 1024 * 65536;
const roundUp8 = (v: number) => Math.ceil(v / 8) * 8;

/** One entry as qcow2_write_snapshots() lays it out (extra data at least the 24 known bytes). */
function encodeEntry(st: CheckState, i: number): Uint8Array {
  const sn = st.snapshots[i]!;
  const extra = Math.max(KNOWN_EXTRA, sn.extraDataSize);
  const out = new Uint8Array(SNAPSHOT_HEADER + extra + sn.idBytes.length + sn.nameBytes.length);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, sn.l1Offset);
  v.setUint32(8, sn.l1Size);
  v.setUint16(12, sn.idBytes.length);
  v.setUint16(14, sn.nameBytes.length);
  v.setUint32(16, sn.dateSec);
  v.setUint32(20, sn.dateNsec);
  v.setBigUint64(24, sn.vmClockNsec);
  // A VM state too large for 32 bits reads as "no VM state" to old readers.
  v.setUint32(32, sn.vmStateSize <= 0xffffffffn ? Number(sn.vmStateSize) : 0);
  v.setUint32(36, extra);
  v.setBigUint64(40, sn.vmStateSize);
  v.setBigUint64(48, sn.diskSize);
  v.setBigUint64(56, sn.icount);
  let pos = SNAPSHOT_HEADER + KNOWN_EXTRA;
  if (sn.extraDataSize > KNOWN_EXTRA) {
    out.set(sn.unknownExtra, pos);
    pos += sn.extraDataSize - KNOWN_EXTRA;
  }
  out.set(sn.idBytes, pos);
  out.set(sn.nameBytes, pos + sn.idBytes.length);
  return out;
}

async function free(st: CheckState, stored: StoredRefcounts, offset: number, size: number): Promise<void> {
  const r = await stored.update(offset, size, -1);
  if (isErr(r)) st.say(`qcow2_free_clusters failed: ${strerror(r.errno)}`);
}

/**
 * qcow2_write_snapshots(), for the repair of a snapshot table (overhanging
 * snapshots dropped, extra data truncated or completed): the table is
 * written anew into freshly allocated clusters, the header switched to it
 * (count and offset, 12 bytes at 60) once it is on disk, and the old table
 * freed. Allocation uses the (already repaired) stored refcounts and never
 * creates refcount blocks; an image that would need one is not repaired.
 */
export async function writeSnapshotTable(st: CheckState): Promise<Ret> {
  const stored = new StoredRefcounts(st);
  let size = 0;
  const starts: number[] = [];
  const entries: Uint8Array[] = [];
  for (let i = 0; i < st.snapshots.length; i++) {
    size = roundUp8(size);
    starts.push(size);
    const e = encodeEntry(st, i);
    entries.push(e);
    size += e.length;
    if (size > MAX_TABLE_BYTES) return 'EFBIG';
  }
  const off = await stored.alloc(size);
  if (isErr(off)) return off.errno;
  const fail = async (errno: string): Promise<Ret> => {
    await free(st, stored, off, size);
    // After a fatal corruption event QEMU's driver is gone and its cache never reaches the file.
    if (!st.driverGone) await stored.flush();
    return errno;
  };
  let f = await stored.flush();
  if (!isErr(f)) f = await st.flush();
  if (isErr(f)) return fail(f.errno);
  const ok = await st.preWriteCheck(0, off, size);
  if (isErr(ok)) return fail(ok.errno);
  // Entry by entry: the padding between entries is not written, as in QEMU.
  for (let i = 0; i < entries.length; i++) {
    const w = await st.write(off + starts[i]!, entries[i]!);
    if (isErr(w)) return fail(w.errno);
  }
  f = await stored.flush();
  if (!isErr(f)) f = await st.flush();
  if (isErr(f)) return fail(f.errno);
  const hdr = new Uint8Array(12);
  const hv = new DataView(hdr.buffer);
  hv.setUint32(0, st.snapshots.length);
  hv.setBigUint64(4, BigInt(off));
  const h = await st.write(60, hdr, true);
  if (isErr(h)) return fail(h.errno);
  await free(st, stored, Number(st.snapshotsOffset), st.snapshotsSize);
  st.snapshotsOffset = BigInt(off);
  st.snapshotsSize = size;
  const last = await stored.flush();
  return isErr(last) ? last.errno : undefined;
}
