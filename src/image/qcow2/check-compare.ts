import { type CheckState, isErr, L1E_OFFSET_MASK, OL } from './check-state.js';
import { hasDataFile } from './header.js';
import type { StoredRefcounts } from './check-stored.js';
import { type CheckCounts, type FixFlags, hex, strerror } from './check-types.js';
import { entryHex, type Pass, type Ret, spend } from './check-walk.js';

const COPIED = 1n << 63n;

/**
 * compare_refcounts(): the stored refcount of every cluster of the file
 * against the computed one. Too high is a leak, too low a corruption, and a
 * stored zero under a used cluster means the refcount structure itself is
 * missing pieces (only a rebuild helps). Returns the highest cluster in use.
 */
export async function compareRefcounts(p: Pass, stored: StoredRefcounts, fix: FixFlags): Promise<number> {
  const { st, res, imrt } = p;
  let highest = 0;
  for (let i = 0; i < imrt.size; i++) {
    const r1 = stored.peek(i) ?? (await stored.get(i));
    if (isErr(r1)) {
      st.say(`Can't get refcount for cluster ${i}: ${strerror(r1.errno)}`);
      res.checkErrors++;
      continue;
    }
    const r2 = imrt.get(i);
    if (r1 > 0 || r2 > 0) highest = i;
    if (r1 === r2) continue;
    let fixing: 'leaks' | 'corruptions' | undefined;
    if (r1 === 0) p.rebuild = true;
    else if (r1 > r2 && fix.leaks) fixing = 'leaks';
    else if (r1 < r2 && fix.errors) fixing = 'corruptions';
    const r1Text = r1 > Number.MAX_SAFE_INTEGER ? (await stored.getExact(i)).toString() : String(r1);
    st.say(`${fixing ? 'Repairing' : r1 < r2 ? 'ERROR' : 'Leaked'} cluster ${i} refcount=${r1Text} reference=${r2}`);
    if (fixing) {
      const w = await stored.set(i, r2);
      if (!isErr(w)) {
        if (fixing === 'leaks') res.leaksFixed++;
        else res.corruptionsFixed++;
        continue;
      }
    }
    if (r1 < r2) res.corruptions++;
    else res.leaks++;
  }
  return highest;
}

/** Rewrites one active L1 entry (qcow2_write_l1_entry(): the file takes 8-byte writes). */
async function writeL1Entry(st: CheckState, i: number): Promise<Ret> {
  const at = Number(st.l1Offset) + i * 8;
  const ok = await st.preWriteCheck(OL.ACTIVE_L1, at, 8);
  if (isErr(ok)) return ok.errno;
  const buf = new Uint8Array(8);
  new DataView(buf.buffer).setBigUint64(0, st.l1Table[i]!);
  const w = await st.write(at, buf, true);
  return isErr(w) ? w.errno : undefined;
}

/**
 * check_oflag_copied(): bit 63 of every active L1 and L2 entry must say
 * whether the cluster it points to has refcount exactly 1. Repaired with
 * -r all, or with -r leaks once nothing else is wrong.
 */
export async function checkOflagCopied(st: CheckState, res: CheckCounts, stored: StoredRefcounts, fix: FixFlags): Promise<Ret> {
  const repair = fix.errors || (fix.leaks && !res.checkErrors && !res.corruptions && !res.leaks);
  const cs = st.clusterSize;
  for (let i = 0; i < st.l1Size; i++) {
    const l1e = st.l1Table[i]!;
    const l2Offset = Number(l1e & L1E_OFFSET_MASK);
    if (!l2Offset) continue;
    const rc = await stored.get(Math.floor(l2Offset / cs));
    if (isErr(rc)) continue;
    if ((rc === 1) !== ((l1e & COPIED) !== 0n)) {
      res.corruptions++;
      st.say(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex(l1e)} refcount=${rc}`);
      if (repair) {
        st.l1Table[i] = rc === 1 ? l1e | COPIED : l1e & ~COPIED;
        const r = await writeL1Entry(st, i);
        if (r) {
          res.checkErrors++;
          return r;
        }
        res.corruptions--;
        res.corruptionsFixed++;
      }
    }
    const buf = await st.read(l2Offset, cs);
    if (isErr(buf)) {
      st.say(`ERROR: Could not read L2 table: ${strerror(buf.errno)}`);
      res.checkErrors++;
      return buf.errno;
    }
    spend(st, st.l2Size);
    const l2 = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let dirty = 0;
    for (let j = 0; j < st.l2Size; j++) {
      const w = st.extendedL2 ? j * 16 : j * 8;
      const hi = l2.getUint32(w);
      const lo = l2.getUint32(w + 4);
      if (hi & 0x40000000) continue; // compressed: never COPIED, checked elsewhere
      const dataOffset = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
      if (!dataOffset) continue;
      const dc = Math.floor(dataOffset / cs);
      // An external data file's clusters count as referenced once (check_oflag_copied).
      const drc = hasDataFile(st.header) ? 1 : (stored.peek(dc) ?? (await stored.get(dc)));
      if (isErr(drc)) continue;
      const copied = (hi & 0x80000000) !== 0;
      if ((drc === 1) === copied) continue;
      res.corruptions++;
      st.say(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED data cluster: l2_entry=${entryHex(hi, lo)} refcount=${drc}`);
      if (repair) {
        l2.setUint32(w, drc === 1 ? (hi | 0x80000000) >>> 0 : hi & 0x7fffffff);
        dirty++;
      }
    }
    if (dirty > 0) {
      const ok = await st.preWriteCheck(OL.ACTIVE_L2, l2Offset, cs);
      if (isErr(ok)) {
        st.say(`ERROR: Could not write L2 table; metadata overlap check failed: ${strerror(ok.errno)}`);
        res.checkErrors++;
        return ok.errno;
      }
      const w = await st.write(l2Offset, buf);
      if (isErr(w)) {
        st.say(`ERROR: Could not write L2 table: ${strerror(w.errno)}`);
        res.checkErrors++;
        return w.errno;
      }
      res.corruptions -= dirty;
      res.corruptionsFixed += dirty;
    }
  }
  return undefined;
}
