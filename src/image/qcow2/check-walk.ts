import { BlockError } from '../errors.js';
import { hasDataFile } from './header.js';
import { ImrtError, type RefcountArray } from './check-imrt.js';
import { type CheckState, isErr, L1E_OFFSET_MASK, L1E_RESERVED_MASK, OL } from './check-state.js';
import { type CheckCounts, type FixFlags, hex, strerror as strerrorOf } from './check-types.js';

/** One computation of the reference counts (calculate_refcounts() and what it calls). */
export interface Pass {
  st: CheckState;
  res: CheckCounts;
  imrt: RefcountArray;
  fix: FixFlags;
  /** Set when the refcount structure itself is broken and only a rebuild can repair it. */
  rebuild: boolean;
}

/** Errno of a failed step; undefined when it went through. */
export type Ret = string | undefined;

/**
 * Table entries examined over a whole check. The walk always terminates
 * (two fixed levels), but snapshots may all point at the same huge tables;
 * this bound turns such an image into an error instead of hours of work.
 */
const MAX_ENTRIES = 2 ** 31;
const budgets = new WeakMap<CheckState, number>();

export function spend(st: CheckState, entries: number): void {
  const used = (budgets.get(st) ?? 0) + entries;
  budgets.set(st, used);
  if (used > MAX_ENTRIES) {
    throw new BlockError('INVALID_IMAGE', `'${st.filename}': too many table references to check (more than ${MAX_ENTRIES} entries)`);
  }
}

const TWO63 = 1n << 63n;

/**
 * qcow2_inc_refcounts_imrt(): counts one reference to every cluster that
 * [offset, offset+size) touches. A region ending a whole cluster or more
 * past the end of the file is a corruption and counts nothing (so the
 * array never grows by more than the overhang of the last cluster).
 * `exact` carries an offset too large to be held exactly in a number.
 */
export function incRefcounts(p: Pass, offset: number, size: number, exact?: bigint): Ret {
  if (size <= 0) return undefined;
  const { st, res, imrt } = p;
  if (exact !== undefined) {
    // QEMU does this arithmetic in int64: an offset of 2^63 or more is negative
    // there, passes the test, and then fails to grow the array.
    if (exact >= TWO63) {
      res.checkErrors++;
      return 'ENOMEM';
    }
    if (exact + BigInt(size) - BigInt(st.fileSize) >= BigInt(st.clusterSize)) return pastEnd(p, exact, size);
  } else if (offset + size - st.fileSize >= st.clusterSize) {
    return pastEnd(p, offset, size);
  }
  const cs = st.clusterSize;
  const first = Math.floor(offset / cs);
  const last = Math.floor((offset + size - 1) / cs);
  for (let k = first; k <= last; k++) {
    if (k >= imrt.size) {
      try {
        imrt.resize(k + 1);
      } catch (err) {
        if (!(err instanceof ImrtError)) throw err;
        res.checkErrors++;
        return err.errno;
      }
    }
    const v = imrt.get(k);
    if (v >= imrt.max) {
      st.say(`ERROR: overflow cluster offset=0x${hex(k * cs)}`);
      st.say('Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing');
      res.corruptions++;
      continue;
    }
    imrt.set(k, v + 1);
  }
  return undefined;
}

function pastEnd(p: Pass, offset: number | bigint, size: number): Ret {
  p.st.say(`ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(offset)} size 0x${hex(size)}`);
  p.res.corruptions++;
  return undefined;
}

/** Whether L2 statistics (allocated / fragmented / compressed clusters) are gathered: active L1 only. */
export const CHECK_FRAG_INFO = 2;

/**
 * fix_l2_entry_by_zero(): turns a preallocated zero cluster with an
 * unaligned offset into a plain zero cluster. Returns the errno and whether
 * the failure was a metadata overlap (which stops the whole walk).
 */
async function fixL2EntryByZero(p: Pass, l2Offset: number, l2: DataView, i: number, active: boolean): Promise<{ ret: Ret; overlap: boolean }> {
  const { st, res } = p;
  const size = st.extendedL2 ? 16 : 8;
  const w = i * size;
  l2.setUint32(w, 0);
  if (st.extendedL2) {
    // Allocated subclusters become zero ones; the cluster descriptor is cleared.
    l2.setUint32(w + 4, 0);
    l2.setUint32(w + 8, (l2.getUint32(w + 8) | l2.getUint32(w + 12)) >>> 0);
    l2.setUint32(w + 12, 0);
  } else {
    l2.setUint32(w + 4, 1);
  }
  const at = l2Offset + w;
  const ok = await st.preWriteCheck(active ? OL.ACTIVE_L2 : OL.INACTIVE_L2, at, size);
  if (isErr(ok)) {
    st.say('ERROR: Overlap check failed');
    res.checkErrors++;
    return { ret: ok.errno, overlap: true };
  }
  const wr = await st.write(at, new Uint8Array(l2.buffer, l2.byteOffset + w, size), true);
  if (isErr(wr)) {
    st.say(`ERROR: Failed to overwrite L2 table entry: ${strerrorOf(wr.errno)}`);
    res.checkErrors++;
    return { ret: wr.errno, overlap: false };
  }
  res.corruptions--;
  res.corruptionsFixed++;
  return { ret: undefined, overlap: false };
}

/** check_refcounts_l2(): one L2 table's entries. */
async function checkL2(p: Pass, l2Offset: number, flags: number, active: boolean): Promise<Ret> {
  const { st, res } = p;
  const buf = await st.read(l2Offset, st.clusterSize);
  if (isErr(buf)) {
    st.say('ERROR: I/O error in check_refcounts_l2');
    res.checkErrors++;
    return buf.errno;
  }
  spend(st, st.l2Size);
  const l2 = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const cs = st.clusterSize;
  const frag = (flags & CHECK_FRAG_INFO) !== 0;
  const hiShift = st.csizeShift - 32;
  const coffHiMask = 2 ** hiShift - 1;
  let nextContiguous = 0;
  const dataFile = hasDataFile(st.header);
  const ext = st.extendedL2;
  for (let i = 0; i < st.l2Size; i++) {
    const w = ext ? i * 16 : i * 8;
    const hi = l2.getUint32(w);
    const lo = l2.getUint32(w + 4);
    // An extended entry's subcluster bitmap: zero bits above, allocation bits below.
    const zeroBits = ext ? l2.getUint32(w + 8) : 0;
    const allocBits = ext ? l2.getUint32(w + 12) : 0;
    if (hi === 0 && lo === 0 && allocBits === 0) continue;
    const compressed = (hi & 0x40000000) !== 0;
    if (!compressed && ((hi & 0x3f000000) !== 0 || (lo & 0x1fe) !== 0)) {
      st.say(`ERROR found l2 entry with reserved bits set: ${entryHex(hi, lo)}`);
      res.corruptions++;
    }
    if (compressed) {
      const cHi = hi & coffHiMask;
      const coffset = cHi * 2 ** 32 + lo;
      const exact = cHi >= 2 ** 21 ? (BigInt(cHi) << 32n) | BigInt(lo) : undefined;
      if (hi & 0x80000000) {
        st.say(`ERROR: coffset=0x${hex(exact ?? coffset)}: copied flag must never be set for compressed clusters`);
        res.corruptions++;
      }
      if (dataFile) {
        st.say(`ERROR compressed cluster ${i} with data file, entry=0x${entryHex(hi, lo)}`);
        res.corruptions++;
        continue;
      }
      if (zeroBits !== 0 || allocBits !== 0) {
        st.say(`ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${entryHex(hi, lo)}`);
        res.corruptions++;
        continue;
      }
      const sectors = ((hi >>> hiShift) & st.csizeMask) + 1;
      const csize = sectors * 512 - (lo & 511);
      const r = incRefcounts(p, coffset, csize, exact);
      if (r) return r;
      if (frag) {
        res.allocatedClusters++;
        res.compressedClusters++;
        res.fragmentedClusters++;
      }
      continue;
    }
    const offset = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
    // Unallocated or plain zero: nothing on disk; but a data file's cluster 0 is at offset 0, told apart by the copied
    // flag. An extended entry has no zero flag (bit 0 is ignored).
    if (offset === 0 && !(dataFile && (hi & 0x80000000) !== 0 && (ext || (lo & 1) === 0))) {
      if (allocBits !== 0) {
        res.corruptions++;
        st.say('ERROR: Unallocated cluster has non-zero subcluster allocation map');
      }
      continue;
    }
    if ((zeroBits & allocBits) !== 0) {
      res.corruptions++;
      st.say(`ERROR offset=${hex(offset)}: Allocated cluster has corrupted subcluster allocation bitmap`);
    }
    if (offset % cs !== 0) {
      res.corruptions++;
      if (ext ? allocBits === 0 : (lo & 1) !== 0) {
        st.say(`${p.fix.errors ? 'Repairing' : 'ERROR'} offset=${hex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`);
        if (p.fix.errors) {
          const f = await fixL2EntryByZero(p, l2Offset, l2, i, active);
          if (f.overlap) return f.ret;
          if (f.ret === undefined) continue;
        }
      } else {
        st.say(`ERROR offset=${hex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.`);
      }
    }
    if (frag) {
      res.allocatedClusters++;
      if (nextContiguous && offset !== nextContiguous) res.fragmentedClusters++;
      nextContiguous = offset + cs;
    }
    // Clusters of an external data file are not the image file's to count.
    if (dataFile) continue;
    const r = incRefcounts(p, offset, cs);
    if (r) return r;
  }
  return undefined;
}

/** check_refcounts_l1(): an L1 table, the L2 tables it points to and their clusters. */
export async function checkL1(p: Pass, l1Offset: bigint, l1Size: number, flags: number, active: boolean): Promise<Ret> {
  const { st, res } = p;
  if (!l1Size) return undefined;
  const bytes = l1Size * 8;
  const r = incRefcounts(p, Number(l1Offset), bytes, l1Offset);
  if (r) return r;
  const buf = await st.read(l1Offset, bytes);
  if (isErr(buf)) {
    st.say('ERROR: I/O error in check_refcounts_l1');
    res.checkErrors++;
    return buf.errno;
  }
  spend(st, l1Size);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < l1Size; i++) {
    const e = view.getBigUint64(i * 8);
    if (e === 0n) continue;
    if (e & L1E_RESERVED_MASK) {
      st.say(`ERROR found L1 entry with reserved bits set: ${hex(e)}`);
      res.corruptions++;
    }
    const l2Offset = Number(e & L1E_OFFSET_MASK);
    const r2 = incRefcounts(p, l2Offset, st.clusterSize);
    if (r2) return r2;
    if (l2Offset % st.clusterSize !== 0) {
      st.say(`ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`);
      res.corruptions++;
    }
    const r3 = await checkL2(p, l2Offset, flags, active);
    if (r3) return r3;
  }
  return undefined;
}

/** A 64-bit entry held as two halves, in lowercase hex without leading zeroes. */
export function entryHex(hi: number, lo: number): string {
  return hex((BigInt(hi) << 32n) | BigInt(lo));
}
