import { BlockError, invalidImage } from '../errors.js';
import type { ByteFile } from '../byte-file.js';
import { HostFile } from '../file.js';
import type { BackingOpener } from './image.js';
import { openBacking } from './open-state.js';
import { parseBitmapsExt, validateBitmapsAtOpen } from './check-bitmaps.js';
import { calculateRefcounts } from './check-calc.js';
import { checkOflagCopied, compareRefcounts } from './check-compare.js';
import { ImrtError, RefcountArray } from './check-imrt.js';
import { rebuildRefcountStructure } from './check-rebuild.js';
import { writeSnapshotTable } from './check-snapshot-write.js';
import { readSnapshotTable } from './check-snapshots.js';
import { CheckState, isErr } from './check-state.js';
import { StoredRefcounts } from './check-stored.js';
import {
  type CheckCounts,
  type CheckMessage,
  type CheckPass,
  type CheckResult,
  emptyCounts,
  failure,
  type FixFlags,
  fixFlags,
  NO_FIX,
  type RepairMode,
  strerror,
} from './check-types.js';
import type { Pass, Ret } from './check-walk.js';
import { AUTOCLEAR_KNOWN, HDR_OFF_AUTOCLEAR, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, MAX_CLUSTER_BITS, MAX_L1_BYTES, MAX_REFTABLE_BYTES, parseHeader, V2_HEADER_LENGTH, validateTable } from './header.js';

export type { CheckMessage, CheckPass, CheckResult, RepairMode } from './check-types.js';

export interface CheckOptions {
  /** qemu-img check -r: 'leaks' fixes refcounts that are too high, 'all' everything it can. */
  repair?: RepairMode;
  /**
   * Opens the backing file the header names, as qemu-img check's open does
   * after the image's own (so a missing or locked backing file fails it); it
   * stays open for the check and is closed after. Without it the backing
   * file is not looked at.
   */
  openBackingImage?: BackingOpener;
}

const INT_MAX = 0x7fffffff;

/**
 * Opens the image the way QEMU opens it for checking (BDRV_O_CHECK): the
 * header must parse, but table offsets are not held against the file size
 * (references past the end are check findings) and the snapshot table is
 * left to the check. Open-time failures are BlockErrors ("Could not open").
 */
async function openForCheck(file: ByteFile, filename: string, writable: boolean): Promise<{ st: CheckState; warnings: CheckMessage[] }> {
  const fileSize = await file.size();
  const probe = await file.read(0, V2_HEADER_LENGTH + 32);
  const bits = new DataView(probe.buffer).getUint32(20);
  const head = await file.read(0, 2 ** Math.min(Math.max(bits, 9), MAX_CLUSTER_BITS));
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const l1Offset = hv.getBigUint64(40);
  const rtOffset = hv.getBigUint64(48);
  const rtClusters = hv.getUint32(56);
  // The header parser checks table offsets more strictly than QEMU does in
  // check mode (which takes offset 0, an empty refcount table, and leaves the
  // snapshot table to the check): hand it harmless values for those fields
  // and apply QEMU's own checks to the real ones.
  const cs0 = 2 ** Math.min(Math.max(bits, 9), MAX_CLUSTER_BITS);
  const masked = head.slice();
  const mv = new DataView(masked.buffer);
  mv.setBigUint64(40, BigInt(cs0));
  mv.setBigUint64(48, BigInt(cs0));
  mv.setUint32(56, 1);
  masked.fill(0, 60, 72);
  const h = parseHeader(masked, filename, Number.MAX_SAFE_INTEGER);
  if (writable && h.version === 3 && (h.autoclearFeatures & ~AUTOCLEAR_KNOWN) !== 0n) {
    // As any read-write open: autoclear bits of features this program does not know are cleared before it writes.
    h.autoclearFeatures &= AUTOCLEAR_KNOWN;
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, h.autoclearFeatures);
    await file.write(HDR_OFF_AUTOCLEAR, b);
  }
  const cs = 2 ** h.clusterBits;
  validateTable(filename, rtOffset, rtClusters, cs, MAX_REFTABLE_BYTES, 'Reference count table', cs);
  validateTable(filename, l1Offset, h.l1Size, 8, MAX_L1_BYTES, 'Active L1 table', cs);
  const { ext, warnings } = parseBitmapsExt(h, filename, cs);
  const readTable = (off: bigint, len: number, what: string) =>
    off >= BigInt(fileSize)
      ? Promise.resolve(new Uint8Array(len))
      : file.read(Number(off), len).catch((e: unknown) => {
          throw new BlockError('IO', `Could not open '${filename}': ${what}: ${errText(e)}`);
        });
  const l1 = await readTable(l1Offset, h.l1Size * 8, 'Could not read L1 table');
  const rt = await readTable(rtOffset, rtClusters * cs, 'Could not initialize refcount handling');
  const st = new CheckState(file, filename, h, writable, fileSize, toEntries(l1), toEntries(rt));
  st.l1Offset = l1Offset;
  st.reftableOffset = rtOffset;
  if (ext) {
    await validateBitmapsAtOpen(st, ext);
    st.bitmaps = ext;
  }
  return { st, warnings };
}

/** qcow2_validate_table(): size within QEMU's limit, offset aligned and not overflowing. */
function errText(e: unknown): string {
  return e instanceof BlockError && e.errno ? strerror(e.errno) : e instanceof Error ? e.message : String(e);
}

function toEntries(buf: Uint8Array): BigUint64Array {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new BigUint64Array(buf.length / 8);
  for (let i = 0; i < out.length; i++) out[i] = view.getBigUint64(i * 8);
  return out;
}

function addCounts(out: CheckCounts, src: CheckCounts, allocationInfo: boolean): void {
  out.corruptions += src.corruptions;
  out.leaks += src.leaks;
  out.checkErrors += src.checkErrors;
  out.corruptionsFixed += src.corruptionsFixed;
  out.leaksFixed += src.leaksFixed;
  if (allocationInfo) {
    out.imageEndOffset = src.imageEndOffset;
    out.totalClusters = src.totalClusters;
    out.allocatedClusters = src.allocatedClusters;
    out.fragmentedClusters = src.fragmentedClusters;
    out.compressedClusters = src.compressedClusters;
  }
}

/** qcow2_check_refcounts(): compute, compare, repair (maybe by rebuilding), then the COPIED flags. */
async function checkRefcounts(st: CheckState, res: CheckCounts, fix: FixFlags): Promise<Ret> {
  st.fileSize = await st.file.size();
  const nb = st.clusters(st.fileSize);
  if (nb > INT_MAX) {
    res.checkErrors++;
    return 'EFBIG';
  }
  res.totalClusters = st.clusters(Math.floor(st.virtualSize / 512) * 512);
  let imrt: RefcountArray;
  try {
    imrt = new RefcountArray(st.refcountOrder, st.clusterBits, nb);
  } catch (err) {
    if (!(err instanceof ImrtError)) throw err;
    res.checkErrors++;
    return err.errno;
  }
  const p: Pass = { st, res, imrt, fix, rebuild: false };
  const r = await calculateRefcounts(p);
  if (r) return r;
  const stored = { v: new StoredRefcounts(st) };
  const r2 = await compareAndRepair(p, stored);
  // Updated refcount blocks reach the file at the end (QEMU's cache is
  // written back at close), unless a fatal corruption event disabled the driver.
  if (!st.driverGone) {
    const f = await stored.v.flush();
    if (!r2 && isErr(f)) {
      res.checkErrors++;
      return f.errno;
    }
  }
  return r2;
}

/** The part of qcow2_check_refcounts() after the computation: compare, repair, COPIED flags. */
async function compareAndRepair(p: Pass, stored: { v: StoredRefcounts }): Promise<Ret> {
  const { st, res, fix, imrt } = p;
  const pre = { ...res };
  let highest = await compareRefcounts(p, stored.v, NO_FIX);
  if (p.rebuild && fix.errors) {
    const old = { ...res };
    let freshLeaks = 0;
    st.say('Rebuilding refcount structure');
    let r = await rebuildRefcountStructure(p);
    if (r) return r;
    res.corruptions = 0;
    res.leaks = 0;
    p.rebuild = false;
    imrt.clear();
    r = await calculateRefcounts({ ...p, fix: NO_FIX });
    if (r) return r;
    stored.v = new StoredRefcounts(st);
    if (fix.leaks) {
      const saved = { ...res };
      Object.assign(res, emptyCounts());
      const again: Pass = { ...p, rebuild: false };
      highest = await compareRefcounts(again, stored.v, { leaks: true, errors: false });
      if (again.rebuild) st.say('ERROR rebuilt refcount structure is still broken');
      freshLeaks = res.leaks;
      Object.assign(res, saved);
    }
    if (res.corruptions < old.corruptions) res.corruptionsFixed += old.corruptions - res.corruptions;
    if (res.leaks < old.leaks) res.leaksFixed += old.leaks - res.leaks;
    res.leaks += freshLeaks;
  } else if (fix.leaks) {
    if (p.rebuild) {
      st.say('ERROR need to rebuild refcount structures');
      res.checkErrors++;
      return 'EIO';
    }
    if (res.leaks || res.corruptions) {
      Object.assign(res, pre);
      highest = await compareRefcounts(p, stored.v, fix);
    }
  }
  const r = await checkOflagCopied(st, res, stored.v, fix);
  if (r) return r;
  res.imageEndOffset = (highest + 1) * st.clusterSize;
  return undefined;
}

/** Reads the 12 header bytes that locate the snapshot table (the open skipped them). */
async function loadSnapshotPointer(st: CheckState): Promise<{ nb: number } | { errno: string }> {
  const buf = await st.read(60, 12);
  if (isErr(buf)) return buf;
  const v = new DataView(buf.buffer);
  st.snapshotsOffset = v.getBigUint64(4);
  st.snapshotsSize = 0;
  return { nb: v.getUint32(0) };
}

/** qcow2_co_check_locked(): snapshot table, refcounts, then marks a repaired image clean and consistent. */
async function checkPass(st: CheckState, fix: FixFlags): Promise<CheckPass> {
  st.messages = [];
  const result = emptyCounts();
  const done = (errno?: string): CheckPass => ({ ...result, messages: st.messages, ...(errno ? { failure: failure(errno) } : {}) });
  if (st.driverGone) return done('ENOMEDIUM');
  const snap = emptyCounts();
  const ptr = await loadSnapshotPointer(st);
  if ('errno' in ptr) {
    result.checkErrors++;
    st.say(`ERROR failed to read the snapshot table pointer from the image header: ${strerror(ptr.errno)}`);
    return done(ptr.errno);
  }
  let r = await readSnapshotTable(st, snap, fix, ptr.nb);
  if (r) {
    addCounts(result, snap, false);
    return done(r);
  }
  const refs = emptyCounts();
  r = await checkRefcounts(st, refs, fix);
  addCounts(result, refs, true);
  if (r) {
    addCounts(result, snap, false);
    return done(r);
  }
  if (snap.corruptions && fix.errors && !st.driverGone) {
    // qcow2_check_fix_snapshot_table(): the repaired list is written as a new table.
    r = await writeSnapshotTable(st);
    if (r) {
      snap.checkErrors++;
      st.say(`ERROR failed to update snapshot table: ${strerror(r)}`);
      addCounts(result, snap, false);
      return done(r);
    }
    snap.corruptionsFixed += snap.corruptions;
    snap.corruptions = 0;
  }
  addCounts(result, snap, false);
  if (fix.leaks && result.checkErrors === 0 && result.corruptions === 0) {
    if (st.incompatible & (INCOMPAT_DIRTY | INCOMPAT_CORRUPT)) {
      st.incompatible &= ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
      const w = await st.writeIncompatible();
      if (isErr(w)) return done(w.errno);
    }
  }
  return done();
}

/**
 * Checks (and with `repair`, repairs) a qcow2 image as `qemu-img check`
 * does: when the first pass fixed something, the image is checked again and
 * that second pass is what is reported, with the first pass's fixed counts.
 * Throws a BlockError when the image cannot be opened for checking.
 */
export async function checkQcow2File(file: ByteFile, filename: string, opts: CheckOptions = {}): Promise<CheckResult> {
  const { st, warnings } = await openForCheck(file, filename, opts.repair !== undefined && !file.readOnly);
  const backing = opts.openBackingImage && st.header.backingFile !== undefined ? await openBacking(filename, st.header, { openBackingImage: opts.openBackingImage }, 0) : undefined;
  try {
    return await checkOpened(st, warnings, opts);
  } finally {
    await backing?.close();
  }
}

async function checkOpened(st: CheckState, warnings: CheckMessage[], opts: CheckOptions): Promise<CheckResult> {
  const first = await checkPass(st, fixFlags(opts.repair));
  const firstPassMessages = [...warnings, ...first.messages];
  const repaired = !first.failure && (first.corruptionsFixed > 0 || first.leaksFixed > 0);
  if (!repaired) return { ...first, format: 'qcow2', messages: firstPassMessages, firstPassMessages, repaired: false };
  const second = await checkPass(st, NO_FIX);
  return {
    ...second,
    corruptionsFixed: first.corruptionsFixed,
    leaksFixed: first.leaksFixed,
    format: 'qcow2',
    messages: [...firstPassMessages, ...second.messages],
    firstPassMessages,
    repaired: true,
  };
}

/** `checkQcow2File` on a path (opened read-write only when repairing). */
export async function checkQcow2(path: string, opts: CheckOptions = {}): Promise<CheckResult> {
  const file = await HostFile.open(path, { readOnly: opts.repair === undefined });
  try {
    return await checkQcow2File(file, path, opts);
  } finally {
    await file.close();
  }
}

/**
 * What QEMU does when it opens a qcow2 image whose dirty bit is set
 * read-write: a repairing check (leaks and errors, rebuilding the refcount
 * structure when needed). A consistent result clears the dirty bit. The
 * messages QEMU would print are returned for the caller to log. Throws
 * "Could not repair dirty image" when the check cannot complete.
 */
export async function repairDirtyImage(file: ByteFile, filename: string): Promise<CheckPass> {
  if (file.readOnly) throw new BlockError('READ_ONLY', `'${filename}' is opened read-only; a dirty image can only be repaired read-write`);
  const { st } = await openForCheck(file, filename, true);
  const pass = await checkPass(st, { leaks: true, errors: true });
  if (pass.failure || pass.checkErrors) {
    throw invalidImage(filename, `Could not repair dirty image: ${strerror(pass.failure?.errno ?? 'EIO')}`);
  }
  return pass;
}

/** Alias under the name of QEMU's step (the image layer may call either). */
export const rebuildRefcounts = repairDirtyImage;
