import { type CheckState, isErr } from './check-state.js';
import type { Ret } from './check-walk.js';
import { type CheckCounts, type FixFlags, strerror } from './check-types.js';

/** One internal snapshot, as far as the check needs it. */
export interface SnapshotEntry {
  id: string;
  name: string;
  l1Offset: bigint;
  l1Size: number;
  extraDataSize: number;
  /** The rest is kept so that a repair can write the table again unchanged. */
  idBytes: Uint8Array;
  nameBytes: Uint8Array;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  vmStateSize: bigint;
  diskSize: bigint;
  icount: bigint;
  unknownExtra: Uint8Array;
}

/** QEMU's limits on the snapshot table (block/qcow2.h). */
export const MAX_SNAPSHOTS = 65536;
const SNAPSHOT_HEADER = 40;
const KNOWN_EXTRA = 24;
const MAX_EXTRA_DATA = 1024;
const MAX_TABLE_BYTES = 1024 * MAX_SNAPSHOTS;
const INT64_MAX = (1n << 63n) - 1n;
const INT_MAX = 0x7fffffff;
/** How the tool that can repair the image is named in hints. */
/** QEMU's driver names its repair in these words, whichever program runs it. */
const REPAIR_TOOL = 'qemu-img check -r all';

const roundUp8 = (v: bigint) => (v + 7n) & ~7n;

/** The bytes up to the first NUL: QEMU keeps names as C strings (strlen() when it writes them back). */
function cBytes(bytes: Uint8Array): Uint8Array {
  const nul = bytes.indexOf(0);
  return nul < 0 ? bytes : bytes.subarray(0, nul);
}

class SnapshotReadError {
  constructor(
    readonly errno: string,
    readonly message: string,
    readonly hint?: string,
  ) {}
}

/**
 * qcow2_do_read_snapshots() in check mode: walks the variable-length
 * entries. With `repair`, too much extra data is truncated and a table
 * grown past QEMU's limit loses its overhanging snapshots.
 */
async function readEntries(
  st: CheckState,
  nb: number,
  repair: boolean,
): Promise<{ entries: SnapshotEntry[]; size: number; reduced: number; dropped: number } | SnapshotReadError> {
  const entries: SnapshotEntry[] = [];
  let offset = st.snapshotsOffset;
  let tableLength = 0n;
  let reduced = 0;
  let dropped = 0;
  const readOrFail = async (at: bigint, len: number) => {
    const r = await st.read(at, len);
    if (isErr(r)) throw new SnapshotReadError(r.errno, `Failed to read snapshot table: ${strerror(r.errno)}`);
    return r;
  };
  try {
    for (let i = 0; i < nb; i++) {
      const pre = offset;
      tableLength = roundUp8(tableLength);
      offset = roundUp8(offset);
      const h = new DataView((await readOrFail(offset, SNAPSHOT_HEADER)).buffer);
      offset += BigInt(SNAPSHOT_HEADER);
      const l1Offset = h.getBigUint64(0);
      const l1Size = h.getUint32(8);
      const idSize = h.getUint16(12);
      const nameSize = h.getUint16(14);
      let extra = h.getUint32(36);
      let truncate = false;
      if (extra > MAX_EXTRA_DATA) {
        if (!repair) {
          throw new SnapshotReadError(
            'EFBIG',
            `Too much extra metadata in snapshot table entry ${i}`,
            `You can force-remove this extra metadata with ${REPAIR_TOOL}`,
          );
        }
        st.say(`Discarding too much extra metadata in snapshot table entry ${i} (${extra} > ${MAX_EXTRA_DATA})`);
        dropped++;
        truncate = true;
      }
      const known = Math.min(KNOWN_EXTRA, extra);
      const kb = new Uint8Array(KNOWN_EXTRA);
      kb.set(await readOrFail(offset, known));
      const kv = new DataView(kb.buffer);
      offset += BigInt(known);
      let unknownExtra: Uint8Array = new Uint8Array(0);
      if (extra > KNOWN_EXTRA) {
        const end = offset + BigInt(extra - KNOWN_EXTRA);
        if (truncate) extra = MAX_EXTRA_DATA;
        unknownExtra = await readOrFail(offset, extra - KNOWN_EXTRA);
        offset = end;
      }
      const idBytes = cBytes(await readOrFail(offset, idSize));
      offset += BigInt(idSize);
      const nameBytes = cBytes(await readOrFail(offset, nameSize));
      offset += BigInt(nameSize);
      tableLength += BigInt(SNAPSHOT_HEADER + extra + idSize + nameSize);
      if (tableLength > BigInt(MAX_TABLE_BYTES) || offset - st.snapshotsOffset > BigInt(INT_MAX)) {
        if (!repair) {
          throw new SnapshotReadError(
            'EFBIG',
            'Snapshot table is too big',
            `You can force-remove all ${nb - i} overhanging snapshots with ${REPAIR_TOOL}`,
          );
        }
        st.say(`Discarding ${nb - i} overhanging snapshots (snapshot table is too big)`);
        reduced += nb - i;
        offset = pre;
        break;
      }
      entries.push({
        id: new TextDecoder().decode(idBytes),
        name: new TextDecoder().decode(nameBytes),
        l1Offset,
        l1Size,
        extraDataSize: extra,
        idBytes,
        nameBytes,
        dateSec: h.getUint32(16),
        dateNsec: h.getUint32(20),
        vmClockNsec: h.getBigUint64(24),
        vmStateSize: extra >= 8 ? kv.getBigUint64(0) : BigInt(h.getUint32(32)),
        diskSize: extra >= 16 ? kv.getBigUint64(8) : BigInt(Math.floor(st.virtualSize / 512) * 512),
        icount: extra >= 24 ? kv.getBigUint64(16) : (1n << 64n) - 1n,
        unknownExtra,
      });
    }
  } catch (err) {
    if (err instanceof SnapshotReadError) return err;
    throw err;
  }
  return { entries, size: Number(offset - st.snapshotsOffset), reduced, dropped };
}

/**
 * qcow2_check_read_snapshot_table(): validates and reads the snapshot table
 * before the refcounts are checked (an image opened for checking skips it at
 * open). Findings go to `res`; a table that cannot be read ends the check.
 */
export async function readSnapshotTable(st: CheckState, res: CheckCounts, fix: FixFlags, rawNb: number): Promise<Ret> {
  let nb = rawNb;
  let reduced = 0;
  if (nb > MAX_SNAPSHOTS && fix.errors) {
    st.say(`Discarding ${nb - MAX_SNAPSHOTS} overhanging snapshots`);
    reduced += nb - MAX_SNAPSHOTS;
    nb = MAX_SNAPSHOTS;
  }
  const invalid = (errno: string, msg: string): Ret => {
    res.checkErrors++;
    st.report(`ERROR ${msg}`);
    if (nb > MAX_SNAPSHOTS) st.say(`You can force-remove all ${nb - MAX_SNAPSHOTS} overhanging snapshots with ${REPAIR_TOOL}`);
    st.snapshots = [];
    st.snapshotsOffset = 0n;
    return errno;
  };
  if (nb > MAX_SNAPSHOTS) return invalid('EFBIG', 'snapshot table too large');
  const off = st.snapshotsOffset;
  if (INT64_MAX - BigInt(nb * SNAPSHOT_HEADER) < off || off % BigInt(st.clusterSize) !== 0n) {
    return invalid('EINVAL', 'snapshot table offset invalid');
  }
  const r = await readEntries(st, nb, fix.errors);
  if (r instanceof SnapshotReadError) {
    res.checkErrors++;
    st.report(`ERROR failed to read the snapshot table: ${r.message}`);
    if (r.hint) st.say(r.hint);
    st.snapshots = [];
    st.snapshotsOffset = 0n;
    return r.errno;
  }
  st.snapshots = r.entries;
  st.snapshotsSize = r.size;
  reduced += r.reduced;
  res.corruptions += reduced + r.dropped;
  if (reduced) {
    const buf = new Uint8Array(4);
    new DataView(buf.buffer).setUint32(0, st.snapshots.length);
    const w = await st.write(60, buf, true);
    if (isErr(w)) {
      res.checkErrors++;
      st.say(`ERROR failed to update the snapshot count in the image header: ${strerror(w.errno)}`);
      return w.errno;
    }
    res.corruptionsFixed += reduced;
    res.corruptions -= reduced;
  }
  if (st.version >= 3) {
    st.snapshots.forEach((sn, i) => {
      if (sn.extraDataSize < 16) {
        res.corruptions++;
        st.say(`${fix.errors ? 'Repairing' : 'ERROR'} snapshot table entry ${i} is incomplete`);
      }
    });
  }
  return undefined;
}
