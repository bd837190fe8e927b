import { BlockError } from '../errors.js';
import { classify } from './entry.js';
import { COMPAT_LAZY_REFCOUNTS, INCOMPAT_COMPRESSION, serializeHeader, V3_HEADER_LENGTH_WRITTEN } from './header.js';
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
  /** Progress of the long steps, in percent (qcow2_amend_helper_cb's points). */
  progress?: (percent: number) => void;
}

const fail = (errno: string, message: string, hint?: string) =>
  new BlockError(errno === 'EINVAL' ? 'INVALID_ARGUMENT' : 'UNSUPPORTED', message, { errno: errno as 'EINVAL', ...(hint ? { hint } : {}) });

/** qcow2_update_header: cluster 0 rewritten from the in-memory header, everything it names on disk first. */
async function updateHeader(img: Qcow2Image): Promise<void> {
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
    await updateHeader(img);
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
    await updateHeader(img);
    return 'reopen';
  }
  await updateHeader(img);
  if (req.backingFile !== undefined || req.backingFormat !== undefined) {
    if (req.backingFile !== h.backingFile || req.backingFormat !== h.backingFormat) {
      throw fail('EINVAL', 'Cannot amend the backing file', "You can use 'blockemu img rebase' instead.");
    }
  }
  const lazy = (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n;
  if (req.lazyRefcounts !== undefined && req.lazyRefcounts !== lazy) {
    if (req.lazyRefcounts && newVersion < 3) {
      throw fail('EINVAL', 'Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)');
    }
    // Turning them off needs a clean image: a read-write open already repaired a dirty one.
    h.compatibleFeatures = req.lazyRefcounts ? h.compatibleFeatures | COMPAT_LAZY_REFCOUNTS : h.compatibleFeatures & ~COMPAT_LAZY_REFCOUNTS;
    await updateHeader(img);
  }
  if (req.size !== undefined && req.size !== 0) await img.resize(req.size);
  if (newVersion < oldVersion) {
    await downgrade(img);
    req.progress?.(100);
  }
  return 'done';
}

/** What is left of `req` once amendQcow2 returned 'reopen': the upgrade and the refcount width are done. */
export function amendRest(req: AmendRequest): AmendRequest {
  const { refcountBits: _r, ...rest } = req;
  return rest;
}

/** qcow2_downgrade to version 2: its refusals, zero clusters expanded, the version 3 fields dropped. */
async function downgrade(img: Qcow2Image): Promise<void> {
  const h = img.header;
  if (h.refcountOrder !== 4) throw fail('ENOTSUP', 'compat=0.10 requires refcount_bits=16');
  const snapshots = await listSnapshots(img);
  const bytes = Math.ceil(h.size / 512) * 512;
  if (snapshots.some((s) => s.vmStateSize > 0xffffffffn || Number(s.diskSize) !== bytes)) throw fail('ENOTSUP', 'Internal snapshots prevent downgrade of image');
  const other = h.incompatibleFeatures & ~INCOMPAT_COMPRESSION;
  if (other !== 0n) throw fail('ENOTSUP', `Cannot downgrade an image with incompatible features 0x${other.toString(16)} set`);
  if (h.incompatibleFeatures & INCOMPAT_COMPRESSION) throw fail('ENOTSUP', 'Cannot downgrade an image with zstd compression type and existing compressed clusters');
  // Version 2 has no bitmaps (autoclear goes): refused rather than leaving their clusters behind.
  if ((await img.bitmaps.describe()).length > 0) throw fail('ENOTSUP', 'Downgrading an image with persistent bitmaps is not supported by blockemu');
  if (snapshots.length > 0 && (await snapshotsHaveZeroClusters(img))) {
    throw fail('ENOTSUP', 'Downgrading an image whose internal snapshots hold zero clusters is not supported by blockemu');
  }
  await expandZeroClusters(img);
  h.compatibleFeatures = 0n;
  h.autoclearFeatures = 0n;
  h.version = 2;
  await updateHeader(img);
}

async function snapshotsHaveZeroClusters(img: Qcow2Image): Promise<boolean> {
  for (const sn of await listSnapshots(img)) {
    const l1 = viewOf(await img.file.read(sn.l1Offset, sn.l1Size * 8));
    for (let i = 0; i < sn.l1Size; i++) {
      const off = entryOffset(entryHi(l1, i), entryLo(l1, i));
      if (off === 0) continue;
      const t = viewOf(await img.file.read(off, img.layout.clusterSize));
      for (let j = 0; j < img.layout.l2Entries; j++) if (classify({ hi: entryHi(t, j), lo: entryLo(t, j) }, 3) === 'zero') return true;
    }
  }
  return false;
}

/**
 * qcow2_expand_zero_clusters for the active table: a zero cluster with a
 * host cluster gets zeroes written there and loses its flag; one without
 * becomes unallocated (no backing file) or a fresh cluster of zeroes.
 */
async function expandZeroClusters(img: Qcow2Image): Promise<void> {
  const cs = img.layout.clusterSize;
  const zeroes = new Uint8Array(cs);
  await img.meta.run(async () => {
    for (let i = 0; i < img.header.l1Size; i++) {
      const l2off = img.l2Offset(i);
      if (l2off === 0) continue;
      const view = viewOf(await img.l2Cache.get(l2off));
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
          // A host cluster someone else references too is left to them.
          const at = (await img.refcounts!.allocate(1)) * cs;
          await img.file.write(at, zeroes);
          setEntry(view, j, (offsetHi(at) | COPIED_HI) >>> 0, offsetLo(at));
          if (host !== 0) img.refcounts!.free(host / cs);
        }
        dirty = true;
      }
      if (dirty) {
        // A table shared with a snapshot is not changed in place: such images were refused above.
        img.l2Cache.markDirty(l2off);
      }
    }
    await img.writeMetadata();
    await img.file.flush();
  });
}
