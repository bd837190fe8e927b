import { ImrtError, IMRT_MAX_BYTES } from './check-imrt.js';
import { checkBitmapsRefcounts } from './check-bitmaps.js';
import { isErr, REFT_OFFSET_MASK, REFT_RESERVED_MASK } from './check-state.js';
import { altHex, strerror } from './check-types.js';
import { CHECK_FRAG_INFO, checkL1, incRefcounts, type Pass, type Ret } from './check-walk.js';
import { hasDataFile, MAX_L1_BYTES } from './header.js';

const INT64_MAX = (1n << 63n) - 1n;

/**
 * A refcount block pointing past the end of the file: with -r all the file
 * is grown to cover it (QEMU's repair), else it stays a corruption. Growth
 * that would need a computed-refcount array beyond our memory bound is
 * refused up front instead of truncating first.
 */
async function repairOutsideBlock(p: Pass, offset: bigint): Promise<Ret | 'fixed' | 'failed'> {
  const { st, res, imrt } = p;
  const cs = BigInt(st.clusterSize);
  let errno: string | undefined;
  if (offset > INT64_MAX - cs) {
    errno = 'EINVAL';
  } else if (offset + cs > BigInt(Number.MAX_SAFE_INTEGER)) {
    // Beyond any host file system's file size limit: ftruncate() would say so.
    st.report(`Could not resize file: ${strerror('EFBIG')}`);
    errno = 'EFBIG';
  } else {
    const newNb = Number((offset + cs + cs - 1n) / cs);
    if (newNb > 0x7fffffff || newNb * 8 > IMRT_MAX_BYTES) {
      res.checkErrors++;
      return 'ENOMEM';
    }
    const t = await st.truncate(Number(offset + cs));
    if (isErr(t)) {
      st.report(`Could not resize file: ${strerror(t.errno)}`);
      errno = t.errno;
    } else {
      try {
        imrt.resize(st.clusters(st.fileSize));
      } catch (err) {
        if (!(err instanceof ImrtError)) throw err;
        res.checkErrors++;
        return err.errno;
      }
      if (offset / cs >= BigInt(imrt.size)) {
        errno = 'EINVAL';
      } else {
        res.corruptions--;
        res.corruptionsFixed++;
        const r = incRefcounts(p, Number(offset), st.clusterSize);
        return r ?? 'fixed';
      }
    }
  }
  p.rebuild = true;
  st.say(`ERROR could not resize image: ${strerror(errno)}`);
  return 'failed';
}

/** check_refblocks(): every refcount table entry and the block it points to. */
async function checkRefblocks(p: Pass): Promise<Ret> {
  const { st, res, imrt } = p;
  const cs = BigInt(st.clusterSize);
  for (let i = 0; i < st.reftable.length; i++) {
    const e = st.reftable[i]!;
    const offset = e & REFT_OFFSET_MASK;
    const cluster = offset / cs;
    if (e & REFT_RESERVED_MASK) {
      st.say(`ERROR refcount table entry ${i} has reserved bits set`);
      res.corruptions++;
      p.rebuild = true;
      continue;
    }
    if (offset % cs !== 0n) {
      st.say(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
      res.corruptions++;
      p.rebuild = true;
      continue;
    }
    if (cluster >= BigInt(imrt.size)) {
      res.corruptions++;
      st.say(`${p.fix.errors ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`);
      if (p.fix.errors) {
        const r = await repairOutsideBlock(p, offset);
        if (r !== 'fixed' && r !== 'failed' && r !== undefined) return r;
      }
      continue;
    }
    if (offset !== 0n) {
      const r = incRefcounts(p, Number(offset), st.clusterSize);
      if (r) return r;
      const n = imrt.get(Number(cluster));
      if (n !== 1) {
        st.say(`ERROR refcount block ${i} refcount=${n}`);
        res.corruptions++;
        p.rebuild = true;
      }
    }
  }
  return undefined;
}

/**
 * calculate_refcounts(): counts every reference the image makes, in QEMU's
 * order (the order of its messages): header, active L1/L2/data, each
 * snapshot's tables, the snapshot table, the refcount table, bitmaps, and
 * finally the refcount blocks.
 */
export async function calculateRefcounts(p: Pass): Promise<Ret> {
  const { st, res } = p;
  let r = incRefcounts(p, 0, st.clusterSize);
  if (r) return r;
  r = await checkL1(p, st.l1Offset, st.l1Size, CHECK_FRAG_INFO, true);
  if (r) return r;
  if (hasDataFile(st.header) && st.snapshots.length > 0) {
    st.say(`ERROR ${st.snapshots.length} snapshots in image with data file`);
    res.corruptions++;
  }
  for (const sn of st.snapshots) {
    if (sn.l1Offset % BigInt(st.clusterSize) !== 0n) {
      st.say(`ERROR snapshot ${sn.id} (${sn.name}) l1_offset=${altHex(sn.l1Offset)}: L1 table is not cluster aligned; snapshot table entry corrupted`);
      res.corruptions++;
      continue;
    }
    if (sn.l1Size > MAX_L1_BYTES / 8) {
      st.say(`ERROR snapshot ${sn.id} (${sn.name}) l1_size=${altHex(sn.l1Size)}: L1 table is too large; snapshot table entry corrupted`);
      res.corruptions++;
      continue;
    }
    r = await checkL1(p, sn.l1Offset, sn.l1Size, 0, false);
    if (r) return r;
  }
  r = incRefcounts(p, Number(st.snapshotsOffset), st.snapshotsSize, st.snapshotsOffset);
  if (r) return r;
  r = incRefcounts(p, Number(st.reftableOffset), st.reftable.length * 8, st.reftableOffset);
  if (r) return r;
  // A LUKS-encrypted image's header and key material (the crypto extension's area).
  const crypto = st.header.cryptoHeader;
  if (crypto && crypto.length > 0) {
    r = incRefcounts(p, crypto.offset, crypto.length);
    if (r) return r;
  }
  r = await checkBitmapsRefcounts(p);
  if (r) return r;
  return checkRefblocks(p);
}
