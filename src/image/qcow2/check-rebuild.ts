import { ImrtError } from './check-imrt.js';
import { isErr } from './check-state.js';
import { strerror } from './check-types.js';
import type { Pass, Ret } from './check-walk.js';
import { HDR_OFF_REFTABLE } from './header.js';

/** The refcount table being built: entry i = offset of refcount block i (0 = none). */
interface NewReftable {
  entries: number[];
}

class RebuildError {
  constructor(
    readonly errno: string,
    readonly what: string,
  ) {}
}

/**
 * alloc_clusters_imrt(): `count` contiguous clusters that nothing uses,
 * searched from `cursor.v` (which moves to the first gap seen), appended
 * past the end of the used area when no gap is large enough. Allocation
 * happens only in the computed refcounts, which the new blocks then record.
 */
function allocClusters(p: Pass, count: number, cursor: { v: number }): number {
  const { imrt } = p;
  let cluster = cursor.v;
  let contiguous = 0;
  let firstGap = true;
  for (; cluster < imrt.size && contiguous < count; cluster++) {
    if (imrt.get(cluster) === 0) {
      contiguous++;
      if (firstGap) {
        cursor.v = cluster;
        firstGap = false;
      }
    } else {
      contiguous = 0;
    }
  }
  if (contiguous < count) {
    try {
      imrt.resize(cluster + count - contiguous);
    } catch (err) {
      if (err instanceof ImrtError) throw new RebuildError(err.errno, 'ERROR allocating refblock');
      throw err;
    }
  }
  cluster -= contiguous;
  for (let i = 0; i < count; i++) imrt.set(cluster + i, 1);
  return cluster * p.st.clusterSize;
}

/**
 * rebuild_refcounts_write_refblocks(): writes a refcount block for every
 * block-sized range of [first, end) holding a used cluster, allocating the
 * blocks that do not exist yet (in a range not yet written, so each block
 * written already counts every allocation inside it). Returns whether the
 * new refcount table had to grow.
 */
async function writeRefblocks(p: Pass, first: number, endIn: number, rt: NewReftable): Promise<boolean> {
  const { st, imrt } = p;
  const cs = st.clusterSize;
  const perBlock = 2 ** st.rbBits;
  const cursor = { v: 0 };
  let end = endIn;
  let grown = false;
  for (let cluster = first; cluster < end; cluster++) {
    if (imrt.get(cluster) === 0) continue;
    const index = Math.floor(cluster / perBlock);
    const start = index * perBlock;
    let off: number;
    if (rt.entries.length > index && rt.entries[index]) {
      off = rt.entries[index]!;
    } else {
      if (cursor.v < start) cursor.v = start;
      off = allocClusters(p, 1, cursor);
      if (off / cs >= end) end = off / cs + 1;
      if (rt.entries.length <= index) {
        const want = (Math.ceil(((index + 1) * 8) / cs) * cs) / 8;
        while (rt.entries.length < want) rt.entries.push(0);
        grown = true;
      }
      rt.entries[index] = off;
    }
    const ok = await st.preWriteCheck(0, off, cs);
    if (isErr(ok)) throw new RebuildError(ok.errno, 'ERROR writing refblock');
    const w = await st.write(off, imrt.encodeBlock(index, cs));
    if (isErr(w)) throw new RebuildError(w.errno, 'ERROR writing refblock');
    cluster = start + perBlock - 1;
  }
  return grown;
}

/**
 * rebuild_refcount_structure(): a whole new refcount structure from the
 * computed refcounts, written into clusters nothing uses (after the end of
 * the used area when there is no gap), then switched to by one 12-byte
 * header write (table offset + cluster count at offset 48) once everything
 * else is on disk. The old structure is left behind as leaked clusters,
 * which the check repairs next.
 */
export async function rebuildRefcountStructure(p: Pass): Promise<Ret> {
  const { st, res, imrt } = p;
  const cs = st.clusterSize;
  const rt: NewReftable = { entries: [] };
  let stage = 'blocks';
  try {
    await writeRefblocks(p, 0, imrt.size, rt);
    let tableOffset: number;
    let tableClusters: number;
    let changed: boolean;
    do {
      tableClusters = Math.ceil((rt.entries.length * 8) / cs);
      stage = 'table';
      try {
        tableOffset = allocClusters(p, tableClusters, { v: 0 });
      } catch (err) {
        if (err instanceof RebuildError) throw new RebuildError(err.errno, 'ERROR allocating reftable');
        throw err;
      }
      stage = 'blocks';
      const start = tableOffset / cs;
      changed = await writeRefblocks(p, start, start + tableClusters, rt);
    } while (changed);
    stage = 'write';
    const table = new Uint8Array(rt.entries.length * 8);
    const view = new DataView(table.buffer);
    rt.entries.forEach((o, i) => view.setBigUint64(i * 8, BigInt(o)));
    const ok = await st.preWriteCheck(0, tableOffset, table.length);
    if (isErr(ok)) throw new RebuildError(ok.errno, 'ERROR writing reftable');
    const w = await st.write(tableOffset, table);
    if (isErr(w)) throw new RebuildError(w.errno, 'ERROR writing reftable');
    // The new blocks and table must be on disk before the header points at them.
    const f = await st.flush();
    if (isErr(f)) throw new RebuildError(f.errno, 'ERROR setting reftable');
    const hdr = new Uint8Array(12);
    const hv = new DataView(hdr.buffer);
    hv.setBigUint64(0, BigInt(tableOffset));
    hv.setUint32(8, tableClusters);
    const h = await st.write(HDR_OFF_REFTABLE, hdr, true);
    if (isErr(h)) throw new RebuildError(h.errno, 'ERROR setting reftable');
    st.reftable = BigUint64Array.from(rt.entries, (o) => BigInt(o));
    st.reftableOffset = BigInt(tableOffset);
    return undefined;
  } catch (err) {
    if (!(err instanceof RebuildError)) throw err;
    st.report(`${err.what}: ${strerror(err.errno)}`);
    // QEMU counts an internal error for failed allocations and refblock writes, not for the final table writes.
    if (stage !== 'write') res.checkErrors++;
    return err.errno;
  }
}
