import { getRefcountIn, setRefcountIn } from './check-imrt.js';
import { type CheckState, type IoResult, isErr, OL, REFT_OFFSET_MASK } from './check-state.js';
import { altHex } from './check-types.js';

/** Refcount blocks kept in memory at once: bounds memory whatever the image size. */
const CACHE_BLOCKS = 64;
/** Clusters the allocator looks at before giving up. */
const MAX_ALLOC_SCAN = 2 ** 26;

interface Block {
  buf: Uint8Array;
  dirty: boolean;
}

/**
 * The refcounts stored in the image (the on-disk refcount table and blocks),
 * read and updated the way QEMU's qcow2_get_refcount()/update_refcount() do
 * during a check: a missing block reads as zero, an unaligned block offset is
 * a corruption event and an I/O error. Updates stay in a small write-back
 * cache until `flush`.
 */
export class StoredRefcounts {
  private readonly cache = new Map<bigint, Block>();
  private readonly perBlock: number;
  /** The block `peek` used last (0: none exists), so a sequential walk skips the lookups. */
  private lastIndex = -1;
  private lastBlock: Block | 0 = 0;

  constructor(private readonly st: CheckState) {
    this.perBlock = 2 ** st.rbBits;
  }

  /** The block holding `cluster`'s refcount: its offset, 0 when there is none, or an error. */
  private async blockOffset(cluster: number): Promise<IoResult<bigint>> {
    const st = this.st;
    const rtIndex = Math.floor(cluster / this.perBlock);
    if (rtIndex >= st.reftable.length) return 0n;
    const off = st.reftable[rtIndex]! & REFT_OFFSET_MASK;
    if (off === 0n) return 0n;
    if (off % BigInt(st.clusterSize) !== 0n) {
      await st.signalCorruption(true, `Refblock offset ${altHex(off)} unaligned (reftable index: ${altHex(rtIndex)})`);
      return { errno: 'EIO' };
    }
    return off;
  }

  private async load(off: bigint): Promise<IoResult<Block>> {
    const hit = this.cache.get(off);
    if (hit) {
      // Most recently used last: Map keeps insertion order.
      this.cache.delete(off);
      this.cache.set(off, hit);
      return hit;
    }
    if (this.cache.size >= CACHE_BLOCKS) {
      const [oldOff, old] = this.cache.entries().next().value as [bigint, Block];
      if (old.dirty) {
        const w = await this.writeBlock(oldOff, old);
        if (isErr(w)) return w;
      }
      this.cache.delete(oldOff);
      this.lastIndex = -1;
    }
    const buf = await this.st.read(off, this.st.clusterSize);
    if (isErr(buf)) return buf;
    const block = { buf, dirty: false };
    this.cache.set(off, block);
    return block;
  }

  /**
   * The stored refcount without waiting, when it is known: no block for it,
   * or its block already in memory. Undefined otherwise (use `get`).
   */
  peek(cluster: number): number | undefined {
    const st = this.st;
    const rtIndex = Math.floor(cluster / this.perBlock);
    let block: Block | undefined | 0;
    if (rtIndex === this.lastIndex) {
      block = this.lastBlock;
    } else {
      if (rtIndex >= st.reftable.length) return 0;
      const off = st.reftable[rtIndex]! & REFT_OFFSET_MASK;
      block = off === 0n ? 0 : off % BigInt(st.clusterSize) !== 0n ? undefined : this.cache.get(off);
      if (block === undefined) return undefined;
      this.lastIndex = rtIndex;
      this.lastBlock = block;
    }
    if (block === 0) return 0;
    return Number(getRefcountIn(block!.buf, cluster % this.perBlock, st.refcountOrder));
  }

  /** qcow2_get_refcount(): the stored refcount (64-bit values past 2^53 are approximate). */
  async get(cluster: number): Promise<IoResult<number>> {
    const off = await this.blockOffset(cluster);
    if (isErr(off)) return off;
    if (off === 0n) return 0;
    const block = await this.load(off);
    if (isErr(block)) return block;
    return Number(getRefcountIn(block.buf, cluster % this.perBlock, this.st.refcountOrder));
  }

  /** The exact stored value, for messages (64-bit refcounts may exceed 2^53). */
  async getExact(cluster: number): Promise<bigint> {
    const off = await this.blockOffset(cluster);
    if (isErr(off) || off === 0n) return 0n;
    const block = await this.load(off);
    if (isErr(block)) return 0n;
    return BigInt(getRefcountIn(block.buf, cluster % this.perBlock, this.st.refcountOrder));
  }

  /**
   * Sets a stored refcount (update_refcount() by the difference). The
   * check only repairs clusters whose stored refcount is non-zero, so the
   * block always exists; a missing one is an I/O error rather than an
   * allocation.
   */
  async set(cluster: number, value: number): Promise<IoResult<true>> {
    const off = await this.blockOffset(cluster);
    if (isErr(off)) return off;
    if (off === 0n) return { errno: 'EIO' };
    const block = await this.load(off);
    if (isErr(block)) return block;
    this.lastIndex = -1;
    const i = cluster % this.perBlock;
    const order = this.st.refcountOrder;
    const old = BigInt(getRefcountIn(block.buf, i, order));
    setRefcountIn(block.buf, i, order, BigInt(value));
    block.dirty = true;
    if (value === 0 && old !== 0n) return this.discard(cluster);
    return true;
  }

  /**
   * A cluster whose refcount dropped to zero is discarded at once by QEMU
   * (a punched hole reads as zeroes); zeroes written in its place give the
   * same file content. A discard never extends the file.
   */
  private async discard(cluster: number): Promise<IoResult<true>> {
    const cs = this.st.clusterSize;
    const at = cluster * cs;
    if (at >= this.st.fileSize) return true;
    return this.st.write(at, new Uint8Array(Math.min(cs, this.st.fileSize - at)));
  }

  /**
   * update_refcount(): adds `delta` to the refcount of every cluster
   * [offset, offset+length) touches, undoing the part already done when one
   * fails (a refcount would leave [0, max], or its block is missing: the
   * check never allocates refcount blocks).
   */
  async update(offset: number, length: number, delta: number): Promise<IoResult<true>> {
    if (length <= 0) return true;
    const cs = this.st.clusterSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + length - 1) / cs);
    const max = this.st.refcountOrder >= 6 ? 2n ** 64n - 1n : 2n ** BigInt(2 ** this.st.refcountOrder) - 1n;
    for (let c = first; c <= last; c++) {
      const cur = await this.getExactOrErr(c);
      const next = isErr(cur) ? -1n : cur + BigInt(delta);
      const fail: IoResult<true> | undefined = isErr(cur) ? cur : next < 0n || next > max ? { errno: 'EINVAL' } : undefined;
      const w = fail ?? (await this.set(c, Number(next)));
      if (isErr(w)) {
        for (let u = first; u < c; u++) {
          const back = await this.getExactOrErr(u);
          if (!isErr(back)) await this.set(u, Number(back - BigInt(delta)));
        }
        return w;
      }
    }
    return true;
  }

  private async getExactOrErr(cluster: number): Promise<IoResult<bigint>> {
    const off = await this.blockOffset(cluster);
    if (isErr(off)) return off;
    if (off === 0n) return { errno: 'ENOTSUP' };
    const block = await this.load(off);
    if (isErr(block)) return block;
    return BigInt(getRefcountIn(block.buf, cluster % this.perBlock, this.st.refcountOrder));
  }

  /**
   * qcow2_alloc_clusters(): the first run of free clusters (stored refcount
   * 0) long enough for `size` bytes, searched from the start of the file as
   * a freshly opened image does, then counted once.
   */
  async alloc(size: number): Promise<IoResult<number>> {
    const cs = this.st.clusterSize;
    const need = Math.ceil(size / cs);
    let next = 0;
    let run = 0;
    while (run < need) {
      // A bound for images whose stored refcounts claim everything is in use.
      if (next > MAX_ALLOC_SCAN) return { errno: 'EFBIG' };
      const rc = await this.get(next++);
      if (isErr(rc)) return rc;
      run = rc === 0 ? run + 1 : 0;
    }
    const offset = (next - need) * cs;
    const w = await this.update(offset, size, 1);
    return isErr(w) ? w : offset;
  }

  private async writeBlock(off: bigint, block: Block): Promise<IoResult<true>> {
    const o = Number(off);
    const ok = await this.st.preWriteCheck(OL.REFCOUNT_BLOCK, o, this.st.clusterSize);
    if (isErr(ok)) return ok;
    const w = await this.st.write(o, block.buf);
    if (isErr(w)) return w;
    block.dirty = false;
    return true;
  }

  /** Writes the updated blocks back. */
  async flush(): Promise<IoResult<true>> {
    for (const [off, block] of this.cache) {
      if (!block.dirty) continue;
      const w = await this.writeBlock(off, block);
      if (isErr(w)) return w;
    }
    return true;
  }
}
