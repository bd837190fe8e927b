import { strerror } from '../errno.js';
import { BlockError } from '../errors.js';
import { Qcow2Corruption } from './corruption.js';
import { classify } from './entry.js';
import { AUTOCLEAR_DATA_FILE_RAW, COMPAT_LAZY_REFCOUNTS, dataFileIsRaw, hasDataFile, INCOMPAT_COMPRESSION, serializeHeader, snapshotL1Problem, V3_HEADER_LENGTH_WRITTEN } from './header.js';
import type { Qcow2Image } from './image.js';
import { COPIED_HI, entryHi, entryLo, entryOffset, offsetHi, offsetLo, setEntry, viewOf, ZERO_LO } from './layout.js';
import { changeRefcountOrder } from './refcount-order.js';
import { listSnapshots } from './snapshots.js';
import { loadSnapshotTable, writeSnapshotTable } from './snapshot-table.js';

/** What `qemu-img amend -o …` asks of a qcow2 image; absent fields stay as they are. */
export interface AmendRequest {
  version?: 2 | 3;
  lazyRefcounts?: boolean;
  refcountBits?: number;
  size?: number;
  /** backing_file / backing_fmt given: only their current values are accepted. */
  backingFile?: string;
  backingFormat?: string;
  /** data_file: the name the header gives the external data file ('' drops it); only for an image that has one. */
  dataFile?: string;
  /** data_file_raw: may be turned off, not on. */
  dataFileRaw?: boolean;
  /** Progress of the long steps, in percent (qcow2_amend_helper_cb's points). */
  progress?: (percent: number) => void;
}

const fail = (errno: string, message: string, hint?: string) =>
  new BlockError(errno === 'EINVAL' ? 'INVALID_ARGUMENT' : 'UNSUPPORTED', message, { errno: errno as 'EINVAL', ...(hint ? { hint } : {}) });

/** qcow2_update_header: cluster 0 rewritten from the in-memory header, everything it names on disk first. */
export async function rewriteHeader(img: Qcow2Image): Promise<void> {
  await img.flush();
  const cs = img.layout.clusterSize;
  const cluster0 = new Uint8Array(cs);
  cluster0.set(serializeHeader(img.header, cs));
  await img.file.write(0, cluster0);
  await img.file.flush();
}

/**
 * qcow2_amend_options in QEMU's order: upgrade, refcount width, header,
 * backing file check, lazy refcounts, size, downgrade. After a refcount
 * width change the image object's refcount cache is stale: 'reopen' asks
 * the caller to reopen the image and amend again with the rest of the
 * request (amendRest).
 */
export async function amendQcow2(img: Qcow2Image, req: AmendRequest): Promise<'done' | 'reopen'> {
  const h = img.header;
  const oldVersion = h.version;
  const newVersion = req.version ?? oldVersion;
  const bits = 1 << h.refcountOrder;
  const changesWidth = req.refcountBits !== undefined && req.refcountBits !== bits;
  // qcow2_amend_options' checks as it parses the options, before anything changes.
  if (req.dataFile !== undefined && !hasDataFile(h)) throw fail('EINVAL', 'data-file can only be set for images that use an external data file');
  if (req.dataFileRaw && !dataFileIsRaw(h)) throw fail('EINVAL', 'data-file-raw cannot be set on existing images');
  if (newVersion > oldVersion) {
    // qcow2_upgrade's work is 2 points; a refcount width change after it is projected as as much again.
    const scale = changesWidth ? 4 : 2;
    req.progress?.(0);
    // Version 3 wants each snapshot entry's 64-bit VM state size and disk size (16 bytes of extra data): a table
    // without them is written anew first, each entry then with the 24 bytes qcow2_write_snapshots writes.
    const table = await loadSnapshotTable(img);
    if (table.snapshots.some((sn) => sn.extraDataSize < 16)) await writeSnapshotTable(img, table.snapshots, table.bytes);
    h.version = 3;
    h.headerLength = V3_HEADER_LENGTH_WRITTEN;
    h.unknownHeaderTail = new Uint8Array(0);
    h.refcountOrder = 4;
    req.progress?.(100 / scale);
    await rewriteHeader(img);
    req.progress?.(200 / scale);
  }
  if (changesWidth && req.refcountBits !== undefined) {
    if (newVersion < 3 && req.refcountBits !== 16) {
      throw fail('EINVAL', 'Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)');
    }
    // qcow2_amend_helper_cb's points: the upgrade done before counts as one operation of work 2, a downgrade after is projected.
    const ops = (newVersion !== oldVersion ? 1 : 0) + 1;
    const pre = newVersion > oldVersion ? 2 : 0;
    const completed = newVersion > oldVersion ? 1 : 0;
    await changeRefcountOrder(img, Math.log2(req.refcountBits), (done, total) => {
      const current = pre + total;
      const projected = Math.floor((current * (ops - completed - 1)) / (completed + 1));
      req.progress?.(Math.fround(Math.fround(100 * Math.fround(pre + done)) / Math.fround(current + projected)));
    });
    await rewriteHeader(img);
    return 'reopen';
  }
  if (req.dataFileRaw === false) h.autoclearFeatures &= ~AUTOCLEAR_DATA_FILE_RAW;
  if (req.dataFile !== undefined) h.dataFile = req.dataFile === '' ? undefined : req.dataFile;
  await rewriteHeader(img);
  if (req.backingFile !== undefined || req.backingFormat !== undefined) {
    if (req.backingFile !== h.backingFile || req.backingFormat !== h.backingFormat) {
      throw fail('EINVAL', 'Cannot amend the backing file', "You can use 'qemu-img rebase' instead.");
    }
  }
  const lazy = (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n;
  if (req.lazyRefcounts !== undefined && req.lazyRefcounts !== lazy) {
    if (req.lazyRefcounts && newVersion < 3) {
      throw fail('EINVAL', 'Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)');
    }
    // Turning them off needs a clean image (qcow2_mark_clean first: refcounts written, the dirty bit cleared).
    if (!req.lazyRefcounts) await img.lazy.markClean(() => img.flush());
    h.compatibleFeatures = req.lazyRefcounts ? h.compatibleFeatures | COMPAT_LAZY_REFCOUNTS : h.compatibleFeatures & ~COMPAT_LAZY_REFCOUNTS;
    await rewriteHeader(img);
    img.lazy.enabled = req.lazyRefcounts;
  }
  if (req.size !== undefined && req.size !== 0) await img.resize(req.size);
  if (newVersion < oldVersion) {
    // qcow2_expand_zero_clusters reports each L1 entry it visits, over every L1 table.
    await downgrade(img, (visited, total) => req.progress?.(Math.fround(Math.fround(100 * visited) / total)));
  }
  return 'done';
}

/** What is left of `req` once amendQcow2 returned 'reopen': the upgrade and the refcount width are done. */
export function amendRest(req: AmendRequest): AmendRequest {
  const { refcountBits: _r, ...rest } = req;
  return rest;
}

/** qcow2_downgrade to version 2: its refusals, zero clusters expanded, the version 3 fields dropped. */
async function downgrade(img: Qcow2Image, progress: (visited: number, total: number) => void): Promise<void> {
  const h = img.header;
  if (h.refcountOrder !== 4) throw fail('ENOTSUP', 'compat=0.10 requires refcount_bits=16');
  if (img.externalData) throw fail('ENOTSUP', 'Cannot downgrade an image with a data file');
  const snapshots = await listSnapshots(img);
  const bytes = Math.ceil(h.size / 512) * 512;
  if (snapshots.some((s) => s.vmStateSize > 0xffffffffn || Number(s.diskSize) !== bytes)) throw fail('ENOTSUP', 'Internal snapshots prevent downgrade of image');
  const other = h.incompatibleFeatures & ~INCOMPAT_COMPRESSION;
  if (other !== 0n) throw fail('ENOTSUP', `Cannot downgrade an image with incompatible features 0x${other.toString(16)} set`);
  // Version 2 has no bitmaps (autoclear goes): refused rather than leaving their clusters behind.
  if ((await img.bitmaps.describe()).length > 0) throw fail('ENOTSUP', 'Downgrading an image with persistent bitmaps is not supported by blockemu');
  await expandZeroClusters(img, progress);
  if (h.incompatibleFeatures & INCOMPAT_COMPRESSION) {
    // Version 2 knows only zlib: an image without compressed clusters (in its active table) just switches.
    if (await hasCompressedClusters(img)) throw fail('ENOTSUP', 'Cannot downgrade an image with zstd compression type and existing compressed clusters');
    h.incompatibleFeatures &= ~INCOMPAT_COMPRESSION;
    h.compressionType = 0;
  }
  h.compatibleFeatures = 0n;
  h.autoclearFeatures = 0n;
  h.version = 2;
  await rewriteHeader(img);
}

/** qcow2_has_compressed_clusters: whether the active L1 table maps any compressed cluster. */
async function hasCompressedClusters(img: Qcow2Image): Promise<boolean> {
  for (let offset = 0; offset < img.header.size; ) {
    const m = await img.map(offset, img.header.size - offset);
    if (m.kind === 'compressed') return true;
    offset += m.length;
  }
  return false;
}

/**
 * qcow2_expand_zero_clusters, for the active L1 table and then each
 * snapshot's: a zero cluster with a host cluster only its table references
 * gets zeroes written there and loses its flag; one without becomes
 * unallocated (no backing file) or a fresh cluster of zeroes. A table
 * shared by several L1 tables is changed in place for all of them (a fresh
 * cluster then counted once per sharer, as QEMU counts it); a host cluster
 * shared otherwise is not overwritten but replaced (QEMU writes zeroes into
 * it, which would reach the snapshot that still reads data there).
 */
async function expandZeroClusters(img: Qcow2Image, progress: (visited: number, total: number) => void): Promise<void> {
  const cs = img.layout.clusterSize;
  const rc = img.refcounts!;
  const zeroes = new Uint8Array(cs);
  const done = new Set<number>();
  /** Expands one table's entries in `view`; true when it changed. `free` takes what it stops pointing at. */
  const expand = async (l2off: number, view: DataView, free: (cluster: number, count: number) => void): Promise<boolean> => {
    const sharers = await rc.get(l2off / cs);
    let dirty = false;
    for (let j = 0; j < img.layout.l2Entries; j++) {
      const hi = entryHi(view, j);
      const lo = entryLo(view, j);
      if (classify({ hi, lo }, 3) !== 'zero') continue;
      const host = entryOffset(hi, lo);
      if (host !== 0 && (hi & COPIED_HI) !== 0) {
        await img.file.write(host, zeroes);
        setEntry(view, j, hi, (lo & ~ZERO_LO) >>> 0);
      } else if (host === 0 && !img.hasBacking()) {
        setEntry(view, j, 0, 0);
      } else {
        const at = (await rc.allocate(1)) * cs;
        if (sharers > 1) await rc.change(at / cs, sharers - 1);
        await img.file.write(at, zeroes);
        setEntry(view, j, (offsetHi(at) | (sharers === 1 ? COPIED_HI : 0)) >>> 0, offsetLo(at));
        if (host !== 0) free(host / cs, sharers);
      }
      dirty = true;
    }
    return dirty;
  };
  const snapshots = await listSnapshots(img);
  const total = snapshots.reduce((n, sn) => n + sn.l1Size, img.header.l1Size);
  let visited = 0;
  await img.meta.run(async () => {
    for (let i = 0; i < img.header.l1Size; i++, progress(++visited, total)) {
      const l2off = img.l2Offset(i);
      if (l2off === 0 || done.has(l2off)) continue;
      done.add(l2off);
      const view = viewOf(await img.l2Cache.get(l2off));
      if (await expand(l2off, view, (c, n) => rc.free(c, n))) img.l2Cache.markDirty(l2off);
    }
    // Inactive tables are read and written directly, after the zeroes and the counts of what they will point at.
    const changed: Array<{ off: number; table: Uint8Array }> = [];
    // Their frees wait until they are written (writeMetadata applies queued frees after the active tables only).
    const frees: Array<[number, number]> = [];
    for (const sn of snapshots) {
      // qcow2_expand_zero_clusters checks each snapshot's table first, reports a bad one and fails the downgrade.
      const bad = snapshotL1Problem(sn.l1Offset, sn.l1Size, cs);
      if (bad !== undefined) {
        Qcow2Corruption.warn(`${Qcow2Corruption.reportPrefix}${bad.message}\n`);
        throw new BlockError('INVALID_ARGUMENT', `Failed to turn zero into data clusters: ${strerror(bad.errno)}`, { errno: bad.errno });
      }
      const l1 = viewOf(await img.file.read(sn.l1Offset, sn.l1Size * 8));
      for (let i = 0; i < sn.l1Size; i++, progress(++visited, total)) {
        const l2off = entryOffset(entryHi(l1, i), entryLo(l1, i));
        if (l2off === 0 || done.has(l2off)) continue;
        done.add(l2off);
        const table = await img.file.read(l2off, cs);
        if (await expand(l2off, viewOf(table), (c, n) => frees.push([c, n]))) changed.push({ off: l2off, table });
      }
    }
    await img.writeMetadata();
    await img.file.flush();
    for (const t of changed) await img.file.write(t.off, t.table);
    if (changed.length > 0) {
      await img.file.flush();
      // What the snapshots' tables stopped pointing at may go now.
      for (const [c, n] of frees) rc.free(c, n);
      await img.writeMetadata();
      await img.file.flush();
    }
  });
}

