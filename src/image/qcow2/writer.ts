import { BlockError } from '../errors.js';
import { writeZeroes } from '../resize.js';
import { checkRequest, ZERO_CHUNK } from '../request.js';
import { compressCluster } from './compress.js';
import { classify, compressedClusters, encodeCompressed, isInPlace, isZeroAlloc, type L2Entry } from './entry.js';
import type { WritePiece } from '../types.js';
import type { Mapping, Qcow2Image } from './image.js';
import { L2Editor } from './l2-editor.js';
import { COPIED_HI, entryOffset, offsetHi, offsetLo, ZERO_LO } from './layout.js';
import type { RefcountManager } from './refcount.js';
import { hex } from './corruption.js';
import { CRYPT_SECTOR } from '../crypto/sector-cipher.js';
import { type SubclusterCow, subclusterCow, writtenBitmap } from './subcluster-cow.js';
import { discardedEntry, SubclusterZeroes, zeroedEntry } from './subcluster-zeroes.js';

type Plan =
  | { kind: 'inplace'; hostOffset: number; length: number; offset: number }
  /**
   * reuse: the host clusters are the entries' own (preallocated zero clusters, or with extended L2 entries clusters
   * whose subclusters the write allocates): nothing allocated, nothing freed. cow: extended L2 entries only, the bytes
   * written around the data and marked allocated (subcluster-cow.ts).
   */
  | { kind: 'alloc'; offset: number; length: number; old: L2Entry[]; host: number; reuse?: boolean; cow?: SubclusterCow };
type AllocPlan = Extract<Plan, { kind: 'alloc' }>;

/** perform_cow reads head and tail in one request when at most this much guest data lies between. */
const MERGED_COW_READ = 16384;

/**
 * Everything that changes a qcow2 image's mapping: allocating writes with
 * copy-on-write, zero writes, discards and compressed writes.
 *
 * Each request holds a range lock on the clusters it touches (so two writers
 * of one cluster never both allocate it) and takes the metadata mutex only
 * for lookups and table updates. An allocating write plans under the mutex
 * (new clusters counted), writes the data without it, and only then updates
 * the L2 entries: tables never point at unwritten data. Changing the L2
 * tables themselves is L2Editor's part.
 *
 * Before each write of data to the file the writer announces what QEMU's
 * qcow2 announces there (write_aio; cow_read, cow_write, cluster_alloc_space
 * around copy-on-write; cluster_alloc_bytes, l2_update_compressed and
 * write_compressed for compressed clusters), for blkdebug below.
 */
export class Qcow2Writer {
  /** Byte offset where the next compressed cluster may go (inside a partly used host cluster). */
  private compressCursor: number | undefined;

  private readonly l2: L2Editor;
  /** Write-zeroes with extended L2 entries. */
  private readonly subZeroes: SubclusterZeroes;

  constructor(
    private readonly img: Qcow2Image,
    private readonly rc: RefcountManager,
  ) {
    this.l2 = new L2Editor(img, rc);
    this.subZeroes = new SubclusterZeroes(img, this.l2, {
      writeLocked: (offset, data) => this.writeLocked(offset, data),
      readsZero: (from, to) => this.readsZero(from, to),
      noteReleased: (e, into) => this.noteReleased(e, into),
      zeroReleased: (hosts) => this.zeroReleased(hosts),
    });
  }

  private get cs(): number {
    return this.img.layout.clusterSize;
  }

  /** `bound`: where requests must end (the virtual size, or past it for the VM state area). */
  private async locked<T>(offset: number, length: number, fn: () => Promise<T>, bound?: number): Promise<T> {
    const L = this.img.layout;
    const release = await this.img.ranges.acquire(L.clusterStart(offset), L.clusterEnd(offset + length));
    try {
      // A resize may have shrunk the image while this request waited behind it.
      checkRequest('write', offset, length, bound ?? this.img.size());
      return await fn();
    } finally {
      release();
    }
  }

  /** `bound` past the virtual size: a write into the VM state area (vm-state.ts), whose L1 entries exist already. */
  write(offset: number, data: Uint8Array, bound?: number): Promise<void> {
    if (data.length === 0) return Promise.resolve();
    return this.locked(offset, data.length, () => this.writeLocked(offset, data), bound);
  }

  /** write() for a caller that holds the range lock already (a resize zeroing the new area's first cluster). */
  async writeLocked(offset: number, data: Uint8Array): Promise<void> {
    const host = this.inPlaceAtHand(offset, data.length);
    if (host !== undefined) return this.writeInPlace(host, data, offset);
    // An encrypted image is written in whole cipher sectors (qcow2's request alignment): what lies around the data is
    // read and written back with it, under the same range lock (a sector never spans clusters).
    if (this.img.cipher && (offset % CRYPT_SECTOR !== 0 || data.length % CRYPT_SECTOR !== 0)) {
      const start = offset - (offset % CRYPT_SECTOR);
      const whole = await this.readGuest(start, Math.ceil((offset + data.length) / CRYPT_SECTOR) * CRYPT_SECTOR - start);
      whole.set(data, offset - start);
      offset = start;
      data = whole;
    }
    for (let pos = 0; pos < data.length; ) {
      const plan = await this.img.meta.run(() => this.plan(offset + pos, data.length - pos));
      const chunk = data.subarray(pos, pos + plan.length);
      if (plan.kind === 'inplace') await this.writeInPlace(plan.hostOffset, chunk, plan.offset);
      else await this.writeAllocated(plan, chunk);
      pos += plan.length;
    }
  }

  /**
   * The host offset of a write within one cluster that this image alone
   * owns, when its L2 table is in memory: the common guest write, planned
   * without the metadata mutex (the range lock the caller holds keeps the
   * entry as it is, and the cached table is read without an await). Any
   * other write (allocating, encrypted, extended L2 entries, an external
   * data file, a table to load, an unaligned entry to report) goes
   * through plan().
   */
  private inPlaceAtHand(offset: number, length: number): number | undefined {
    const img = this.img;
    const L = img.layout;
    if (img.cipher || img.externalData || L.extendedL2 || (offset % L.clusterSize) + length > L.clusterSize) return undefined;
    const t = this.l2.atHand(L.l1Index(offset));
    if (!t) return undefined;
    const e = img.readEntry(t.view, L.l2Index(offset));
    if (!isInPlace(e, img.version)) return undefined;
    const start = entryOffset(e.hi, e.lo);
    return start % L.clusterSize === 0 ? start + (offset % L.clusterSize) : undefined;
  }

  /**
   * Adjacent pieces, data or zeroes, in offset order, as one request (a
   * block-copy task): one range lock, one planning pass under the mutex
   * for all the data, the data written in parallel (clusters allocated one
   * after another lie together on the host, so the file merges their
   * writes), then one update of the tables for all of it. The outcome is
   * that of the pieces written one by one, which is what happens when a
   * piece does not cover whole clusters (two pieces could share one) or a
   * version 2 image with a backing file must write zeroes as data.
   */
  writePieces(pieces: readonly WritePiece[]): Promise<void> {
    const live = pieces.filter((p) => p.length > 0);
    if (live.length === 0) return Promise.resolve();
    const start = live[0]!.offset;
    const last = live[live.length - 1]!;
    return this.locked(start, last.offset + last.length - start, () => this.piecesLocked(live));
  }

  private async piecesLocked(pieces: readonly WritePiece[]): Promise<void> {
    const img = this.img;
    const cs = this.cs;
    const size = img.size();
    const whole = (p: WritePiece) => p.offset % cs === 0 && (p.length % cs === 0 || p.offset + p.length === size);
    // An external data file takes zeroes and discards of its own (zeroClusters): pieces go one by one there.
    if ((img.version < 3 && img.hasBacking()) || img.externalData || !pieces.every(whole)) {
      for (const p of pieces) await (p.data ? this.writeLocked(p.offset, p.data) : this.zeroLocked(p.offset, p.length, p.mayUnmap ?? false));
      return;
    }
    const jobs: { plan: Plan; data: Uint8Array }[] = [];
    await img.meta.run(async () => {
      for (const p of pieces) {
        if (!p.data) continue;
        for (let pos = 0; pos < p.data.length; ) {
          const plan = await this.plan(p.offset + pos, p.data.length - pos);
          jobs.push({ plan, data: p.data.subarray(pos, pos + plan.length) });
          pos += plan.length;
        }
      }
    });
    const results = await Promise.allSettled(jobs.map((j) => (j.plan.kind === 'inplace' ? this.writeInPlace(j.plan.hostOffset, j.data, j.plan.offset) : this.writeAllocatedData(j.plan, j.data))));
    await img.meta.run(async () => {
      // Data that reached its new clusters is committed even when another piece failed, as it would be written alone.
      for (let i = 0; i < jobs.length; i++) {
        const plan = jobs[i]!.plan;
        if (plan.kind === 'alloc' && results[i]!.status === 'fulfilled') await this.commitAllocated(plan);
      }
      for (const p of pieces) {
        if (p.data) continue;
        const end = p.offset + p.length === size ? img.layout.clusterEnd(size) : p.offset + p.length;
        await this.l2.updateEntries(p.offset, end, img.version >= 3, this.zeroed(p.mayUnmap ?? false));
      }
    });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  /** One run of clusters the write can handle the same way, within one L2 table. Under the mutex. */
  private async plan(offset: number, length: number): Promise<Plan> {
    const img = this.img;
    const L = img.layout;
    const v = img.version;
    const { off: l2off, view } = this.l2.atHand(L.l1Index(offset)) ?? (await this.l2.ready(L.l1Index(offset)));
    let idx = L.l2Index(offset);
    const idx0 = idx;
    const inCluster = offset % L.clusterSize;
    const max = Math.min(length, (L.l2Entries - idx) * L.clusterSize - inCluster);
    let len = Math.min(max, L.clusterSize - inCluster);
    const first = img.readEntry(view, idx);
    const kept = (e: L2Entry) => isInPlace(e, v, img.externalData) || isZeroAlloc(e, v);
    if (kept(first)) {
      // QEMU's handle_copied: clusters the image alone references, normal or preallocated zero, one run while their host
      // clusters follow each other; a zero one takes the data in place (zeroes around it) and loses its zero flag.
      const start = entryOffset(first.hi, first.lo);
      if (start % L.clusterSize !== 0) {
        const what = isInPlace(first, v, img.externalData) ? 'Data cluster' : 'Preallocated zero cluster';
        throw img.corrupt(`${what} offset ${hex(start)} unaligned (guest offset: ${hex(offset)})`);
      }
      const old = [first];
      let host = start;
      while (len < max) {
        const e = img.readEntry(view, ++idx);
        if (!kept(e) || entryOffset(e.hi, e.lo) !== host + L.clusterSize) break;
        host += L.clusterSize;
        old.push(e);
        len = Math.min(max, len + L.clusterSize);
      }
      if (L.extendedL2) {
        const cow = this.subclusterCow(l2off, idx0, old, inCluster, len, true);
        if (!cow) return { kind: 'inplace', hostOffset: start + inCluster, length: len, offset };
        return { kind: 'alloc', offset, length: len, old, host: start / L.clusterSize, reuse: true, cow };
      }
      if (old.every((e) => isInPlace(e, v, img.externalData))) return { kind: 'inplace', hostOffset: start + inCluster, length: len, offset };
      return { kind: 'alloc', offset, length: len, old, host: start / L.clusterSize, reuse: true };
    }
    const old = [first];
    while (len < max) {
      const e = img.readEntry(view, ++idx);
      if (isInPlace(e, v, img.externalData)) break;
      old.push(e);
      len = Math.min(max, len + L.clusterSize);
    }
    // With an external data file a guest cluster's host cluster is its own offset there (do_alloc_cluster_offset), never counted.
    const { start: host, count } = img.externalData ? { start: L.clusterStart(offset) / L.clusterSize, count: old.length } : await this.rc.allocateRun(old.length);
    if (count < old.length) {
      old.length = count;
      len = Math.min(len, count * L.clusterSize - inCluster);
    }
    if (L.extendedL2) {
      try {
        return { kind: 'alloc', offset, length: len, old, host, cow: this.subclusterCow(l2off, idx0, old, inCluster, len, false)! };
      } catch (err) {
        // A corrupt bitmap found after the allocation: the clusters go back (qcow2_alloc_cluster_abort).
        if (!img.externalData) await this.rc.freeUnreferenced(host, old.length);
        throw err;
      }
    }
    return { kind: 'alloc', offset, length: len, old, host };
  }

  /** subclusterCow for a write of `len` bytes at `inCluster` into the entries `old` from L2 index idx0 on. */
  private subclusterCow(l2off: number, idx0: number, old: L2Entry[], inCluster: number, len: number, keepOld: boolean): SubclusterCow | undefined {
    const img = this.img;
    const invalid = (i: number) => img.corrupt(`Invalid cluster entry found (L2 offset: ${hex(l2off)}, L2 index: ${hex(idx0 + i)})`);
    return subclusterCow(img.layout, old, inCluster, inCluster + len, keepOld, img.version, img.externalData, invalid);
  }

  /** Guest data into clusters it already owns. */
  private writeInPlace(hostOffset: number, data: Uint8Array, guest: number): Promise<void> {
    const checking = this.checkOverlap(hostOffset, data.length);
    if (checking) return checking.then(() => this.writeInPlaceChecked(hostOffset, data, guest));
    return this.writeInPlaceChecked(hostOffset, data, guest);
  }

  private writeInPlaceChecked(hostOffset: number, data: Uint8Array, guest: number): Promise<void> {
    this.img.file.event?.('write_aio');
    if (this.img.cipher) return this.img.dataFile.writev(hostOffset, this.img.sealData([data], hostOffset, guest));
    return this.img.dataFile.write(hostOffset, data);
  }

  /**
   * qcow2_pre_write_overlap_check before guest data goes to the file: a
   * write that would land on metadata (a corrupt table pointing there) is
   * a fatal corruption and is not made.
   */
  private checkOverlap(hostOffset: number, bytes: number): Promise<void> | undefined {
    // An external data file holds no metadata (qcow2_pre_write_overlap_check with data_file).
    if (this.img.externalData) return undefined;
    return this.img.checkMetadataWrite(0, hostOffset, bytes);
  }

  /** What a read of one guest cluster returns now (for copy-on-write of a partial write). */
  private async oldCluster(e: L2Entry, guestCluster: number): Promise<Uint8Array> {
    const kind = classify(e, this.img.version, this.img.externalData);
    const m: Mapping = { kind, offset: guestCluster, length: this.cs, hostOffset: kind === 'normal' ? entryOffset(e.hi, e.lo) : 0, entry: e };
    const buf = new Uint8Array(this.cs);
    await this.img.readMapped(m, buf);
    return buf;
  }

  /** Whether a guest cluster reads as zeroes without looking at data: a zero cluster, or unallocated with no backing data there. */
  private oldIsZero(e: L2Entry, guestCluster: number): boolean {
    switch (classify(e, this.img.version, this.img.externalData)) {
      case 'zero':
        return true;
      case 'unallocated': {
        const b = this.img.backing();
        return b === undefined || guestCluster >= b.size();
      }
      default:
        return false;
    }
  }

  /** n zero bytes as views of the shared zero chunk: copy-on-write from a zero cluster allocates no buffer. */
  private zeroes(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (; n > 0; n -= ZERO_CHUNK.length) out.push(ZERO_CHUNK.subarray(0, Math.min(n, ZERO_CHUNK.length)));
    return out;
  }

  private async writeAllocated(plan: AllocPlan, data: Uint8Array): Promise<void> {
    await this.writeAllocatedData(plan, data);
    await this.img.meta.run(() => this.commitAllocated(plan));
  }

  /**
   * The data of an allocating write, with copy-on-write head and tail, at
   * its new host clusters (freed again on failure). The events follow
   * QEMU's handle_alloc_space and perform_cow: where head and tail read as
   * zeroes QEMU zeroes the new clusters (cluster_alloc_space) and writes the
   * data (write_aio); otherwise it reads the old head and tail (cow_read,
   * once for both when at most 16 KiB of data lie between) and writes them
   * with the data in one request (write_aio, cow_write). Here it is one
   * write either way.
   */
  private async writeAllocatedData(plan: AllocPlan, data: Uint8Array): Promise<void> {
    if (plan.cow) return this.writeSubclusterData(plan, plan.cow, data);
    const cs = this.cs;
    const file = this.img.file;
    const head = plan.offset % cs;
    const end = plan.offset + plan.length;
    const tail = (cs - (end % cs)) % cs;
    const first = plan.old[0]!;
    const last = plan.old[plan.old.length - 1]!;
    const firstGuest = plan.offset - head;
    const lastGuest = end - (end % cs);
    // A reused run keeps the data of its normal clusters around the write in place (calculate_l2_meta's keep_old).
    const keepHead = plan.reuse === true && isInPlace(first, this.img.version, this.img.externalData);
    const keepTail = plan.reuse === true && isInPlace(last, this.img.version, this.img.externalData);
    const zeroHead = head === 0 || keepHead || this.oldIsZero(first, firstGuest);
    const zeroTail = tail === 0 || keepTail || this.oldIsZero(last, lastGuest);
    const cow = !(zeroHead && zeroTail);
    const bufs: Uint8Array[] = [];
    let firstOld: Uint8Array | undefined;
    if (head > 0 && !keepHead) {
      if (cow) file.event?.('cow_read');
      if (zeroHead) bufs.push(...this.zeroes(head));
      else {
        firstOld = await this.oldCluster(first, firstGuest);
        bufs.push(firstOld.subarray(0, head));
      }
    }
    bufs.push(data);
    if (tail > 0 && !keepTail) {
      if (cow && !(head > 0 && plan.length <= MERGED_COW_READ)) file.event?.('cow_read');
      if (zeroTail) bufs.push(...this.zeroes(tail));
      else {
        const old = plan.old.length === 1 && firstOld ? firstOld : await this.oldCluster(last, lastGuest);
        bufs.push(old.subarray(cs - tail));
      }
    }
    if (!cow && ((head > 0 && !keepHead) || (tail > 0 && !keepTail))) file.event?.('cluster_alloc_space');
    file.event?.('write_aio');
    if (cow) file.event?.('cow_write');
    const at = plan.host * cs + (keepHead ? head : 0);
    const bytes = (keepHead ? 0 : head) + plan.length + (keepTail ? 0 : tail);
    try {
      await this.checkOverlap(at, bytes);
      // Zero head and tail are written, not left as holes: qemu-img map would report holes in a data cluster as zero.
      await this.img.dataFile.writev(at, this.img.sealData(bufs, at, firstGuest + (keepHead ? head : 0)));
    } catch (err) {
      await this.abortAllocation(plan);
      throw err;
    }
  }

  /**
   * writeAllocatedData with extended L2 entries: the bytes [cow.start,
   * cow.end) of the run's clusters go to the host clusters at once, the
   * data with what the subclusters around it read now (perform_cow reads
   * them through the image too).
   */
  private async writeSubclusterData(plan: AllocPlan, cow: SubclusterCow, data: Uint8Array): Promise<void> {
    const img = this.img;
    const file = img.file;
    const base = img.layout.clusterStart(plan.offset);
    const from = plan.offset - base;
    const to = from + plan.length;
    const bufs: Uint8Array[] = [];
    const copies = cow.start < from || cow.end > to;
    if (copies) file.event?.('cow_read');
    if (cow.start < from) bufs.push(await this.readGuest(base + cow.start, from - cow.start));
    bufs.push(data);
    if (cow.end > to) bufs.push(await this.readGuest(base + to, cow.end - to));
    file.event?.('write_aio');
    if (copies) file.event?.('cow_write');
    const at = plan.host * this.cs + cow.start;
    try {
      await this.checkOverlap(at, cow.end - cow.start);
      await img.dataFile.writev(at, img.sealData(bufs, at, base + cow.start));
    } catch (err) {
      await this.abortAllocation(plan);
      throw err;
    }
  }

  /** qcow2_alloc_cluster_abort: the new clusters of a write that failed go back at once (those of an external data file were never counted). */
  private async abortAllocation(plan: AllocPlan): Promise<void> {
    if (plan.reuse || this.img.externalData) return;
    await this.img.meta.run(() => this.rc.freeUnreferenced(plan.host, plan.old.length));
  }

  /** What guest bytes [offset, offset+length) read now, also past the virtual size (a cluster's tail): the image's own view, backing included. */
  private async readGuest(offset: number, length: number): Promise<Uint8Array> {
    const img = this.img;
    const out = new Uint8Array(length);
    for (let pos = 0; pos < length; ) {
      const m = await img.meta.run(() => img.map(offset + pos, length - pos));
      await img.readMapped(m, out.subarray(pos, pos + m.length));
      pos += m.length;
    }
    return out;
  }

  /** Points the L2 entries of an allocating write at its new clusters, now that the data is there. Under the mutex. */
  private async commitAllocated(plan: AllocPlan): Promise<void> {
    const img = this.img;
    await img.lazy.beforeLink();
    const L = img.layout;
    const cs = this.cs;
    const { off: l2off, view } = this.l2.atHand(L.l1Index(plan.offset)) ?? (await this.l2.ready(L.l1Index(plan.offset)));
    const idx = L.l2Index(plan.offset);
    for (let i = 0; i < plan.old.length; i++) {
      const h = (plan.host + i) * cs;
      const bitmap = plan.cow ? writtenBitmap(L, img.readEntry(view, idx + i), i, plan.cow) : undefined;
      img.writeEntry(view, idx + i, { hi: offsetHi(h) | COPIED_HI, lo: offsetLo(h), ...bitmap });
      if (!plan.reuse) this.l2.release(plan.old[i]!);
    }
    img.l2Cache.markDirty(l2off);
  }

  /** Whether guest bytes [from, to) read as zeroes now (backing file included). */
  private async readsZero(from: number, to: number): Promise<boolean> {
    for (let off = from; off < to; ) {
      const e = await this.img.blockStatus(off, to - off);
      if (!e.zero) return false;
      off += e.length;
    }
    return true;
  }

  writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    if (length === 0) return Promise.resolve();
    return this.locked(offset, length, () => this.zeroLocked(offset, length, mayUnmap));
  }

  private async zeroLocked(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    const L = this.img.layout;
    if (L.extendedL2) return this.subZeroes.zero(offset, length, mayUnmap);
    const end = offset + length;
    // Whole clusters get the zero flag; partial head and tail clusters are handled by zeroPartial.
    const fullStart = L.clusterEnd(offset);
    const fullEnd = end === this.img.size() ? L.clusterEnd(end) : L.clusterStart(end);
    const headEnd = Math.min(end, fullStart);
    if (offset < headEnd) await this.zeroPartial(offset, headEnd - offset, mayUnmap);
    if (fullStart < fullEnd) await this.zeroClusters(fullStart, fullEnd, mayUnmap);
    const tailStart = Math.max(fullEnd, headEnd);
    if (end > tailStart) await this.zeroPartial(tailStart, end - tailStart, mayUnmap);
  }

  /**
   * Zeroes part of one cluster as QEMU's qcow2_co_pwrite_zeroes does: when
   * the cluster is unallocated or already zero and the rest of it reads as
   * zeroes, the whole cluster gets the zero flag (version 2 without a
   * backing file: it stays unallocated); otherwise zeroes are written, like
   * QEMU's fallback.
   */
  private async zeroPartial(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    const img = this.img;
    const cstart = img.layout.clusterStart(offset);
    const cend = Math.min(cstart + this.cs, img.size());
    const m = await img.meta.run(() => img.map(cstart, 1));
    const v3 = img.version >= 3;
    if ((m.kind === 'zero' || m.kind === 'unallocated') && (v3 || !img.hasBacking())) {
      if ((await this.readsZero(cstart, offset)) && (await this.readsZero(offset + length, cend))) {
        if (v3) await this.zeroClusters(cstart, cstart + this.cs, mayUnmap);
        return;
      }
    }
    await this.writeLocked(offset, ZERO_CHUNK.subarray(0, length));
  }

  get subclusterSize(): number {
    return this.img.layout.subclusterSize;
  }

  /** Zero subclusters [offset, offset+length) with extended L2 entries, subcluster-aligned (the end may be past the size); the caller holds the range lock. */
  async zeroizeSubclusters(offset: number, length: number): Promise<void> {
    if (!(await this.subZeroes.zeroize(offset, length, false))) await this.writeLocked(offset, new Uint8Array(length));
  }

  /** Zeroes whole clusters [start, end); the caller holds the range lock (a resize zeroing the new area uses it directly). */
  async zeroClusters(start: number, end: number, mayUnmap: boolean): Promise<void> {
    const img = this.img;
    if (img.version < 3 && img.hasBacking()) {
      // No zero flag in version 2: unallocating would expose the backing file.
      for (let off = start; off < end; off += ZERO_CHUNK.length) {
        const n = Math.min(ZERO_CHUNK.length, end - off, img.size() - off);
        await this.writeLocked(off, ZERO_CHUNK.subarray(0, n));
      }
      return;
    }
    // A raw data file must read as the guest does: zeroes go there first (qcow2_subcluster_zeroize).
    if (img.dataFileRaw) await writeZeroes(img.dataFile, start, Math.min(end, img.size()));
    // Version 3 sets the zero flag everywhere, creating L2 tables as needed
    // (as QEMU does, so the clusters report as allocated zeroes).
    const released: number[] = [];
    await this.img.meta.run(() => this.l2.updateEntries(start, end, img.version >= 3, this.zeroed(mayUnmap, released)));
    if (!img.dataFileRaw) await this.zeroReleased(released);
  }

  /** What zeroClusters makes of an entry (the caller has ruled out version 2 with a backing file). */
  private zeroed(mayUnmap: boolean, released?: number[]): (e: L2Entry) => L2Entry {
    const v = this.img.version;
    return (e) => {
      if (v < 3) return { hi: 0, lo: 0 };
      if (e.alloc !== undefined) {
        const n = zeroedEntry(e, v, this.img.externalData, mayUnmap);
        if (released && n.hi !== e.hi) this.noteReleased(e, released);
        return n;
      }
      const kind = classify(e, v, this.img.externalData);
      // QEMU's zero_in_l2_slice: a host cluster is kept (zero-alloc) unless unmapping is allowed; compressed ones never.
      if (!mayUnmap && (kind === 'normal' || kind === 'zero')) return { hi: e.hi, lo: e.lo | ZERO_LO };
      if (released) this.noteReleased(e, released);
      return { hi: 0, lo: ZERO_LO };
    };
  }

  /** `full`: the clusters become unallocated whatever lies below (QEMU's full_discard, as bdrv_make_empty uses it). */
  discard(offset: number, length: number, full = false): Promise<void> {
    if (length === 0) return Promise.resolve();
    // Version 2 has no zero flag: a discard would expose the backing file's data, so QEMU declines it (ENOTSUP, which the generic layer ignores).
    if (!full && this.img.version < 3 && this.img.hasBacking()) return Promise.resolve();
    return this.locked(offset, length, async () => {
      const L = this.img.layout;
      // Only whole clusters are discarded (a partial one is left as it is, as QEMU does).
      const start = L.clusterEnd(offset);
      const end = offset + length === this.img.size() ? L.clusterEnd(offset + length) : L.clusterStart(offset + length);
      if (start >= end) return;
      const img = this.img;
      const released: number[] = [];
      const discarded = (e: L2Entry): L2Entry => {
        if (e.alloc !== undefined) {
          const n = discardedEntry(e, img.version, img.externalData, img.hasBacking(), full);
          if (n && !full) this.noteReleased(e, released);
          return n ?? e;
        }
        if (classify(e, img.version, img.externalData) === 'unallocated' && (full || !img.hasBacking())) return e;
        if (!full) this.noteReleased(e, released);
        if (full) return { hi: 0, lo: 0 };
        // Version 3 keeps discarded clusters reading as zeroes rather than exposing a backing file.
        return img.version >= 3 ? { hi: 0, lo: ZERO_LO } : { hi: 0, lo: 0 };
      };
      // QEMU finds the L2 table through get_cluster_table, which allocates a missing one even for a discard: so do we, and files grow alike.
      await img.meta.run(async () => {
        if (!full) return this.l2.updateEntries(start, end, true, discarded);
        // Where no L2 table exists everything is unallocated already: none is created.
        for (let at = start; at < end; ) {
          const next = Math.min(end, (L.l1Index(at) + 1) * L.l2Coverage);
          if (L.l1Index(at) < img.header.l1Size && img.l2Offset(L.l1Index(at)) !== 0) await this.l2.updateEntries(at, next, false, discarded);
          at = next;
        }
      });
      await this.zeroReleased(released);
    });
  }

  /**
   * A guest discard passed down to an external data file (qcow2_free_any_cluster
   * with pass-discard-request, as qemu-io and qemu-img have it): where QEMU
   * punches a hole, which Node cannot, the cluster is zeroed, so the data
   * file never keeps what the guest let go of and a raw one stays the
   * guest's image. Records the host cluster of `e` if it has one.
   */
  private noteReleased(e: L2Entry, into: number[]): void {
    const img = this.img;
    if (!img.externalData) return;
    const kind = classify(e, img.version, true);
    const host = entryOffset(e.hi, e.lo);
    if (kind === 'normal' || (kind === 'zero' && host !== 0)) into.push(host);
  }

  private async zeroReleased(hosts: number[]): Promise<void> {
    const cs = this.cs;
    const size = this.img.size();
    hosts.sort((a, b) => a - b);
    for (let i = 0; i < hosts.length; ) {
      let j = i;
      while (j + 1 < hosts.length && hosts[j + 1] === hosts[j]! + cs) j++;
      const end = Math.min(hosts[j]! + cs, size);
      if (end > hosts[i]!) await writeZeroes(this.img.dataFile, hosts[i]!, end);
      i = j + 1;
    }
  }

  /** Writes one whole cluster compressed; a cluster that does not shrink is written normally. */
  writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    const cs = this.cs;
    const img = this.img;
    if (img.externalData || img.header.cryptMethod !== 0) return Promise.reject(new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' }));
    if (offset % cs !== 0 || (data.length !== cs && offset + data.length !== img.size())) {
      return Promise.reject(new BlockError('INVALID_ARGUMENT', `compressed writes must cover exactly one cluster (offset ${offset}, length ${data.length})`, { errno: 'EINVAL' }));
    }
    return this.locked(offset, data.length, async () => {
      const full = data.length === cs ? data : Uint8Array.from({ length: cs }, (_, i) => (i < data.length ? data[i]! : 0));
      const packed = await compressCluster(full, img.header.compressionType);
      if (!packed) return this.writeLocked(offset, data);
      const l1i = img.layout.l1Index(offset);
      // qcow2_alloc_compressed_cluster_offset's order: the L2 table ready, then the bytes.
      const at = await img.meta.run(async () => {
        if (!this.l2.atHand(l1i)) await this.l2.ready(l1i);
        return this.allocBytes(packed.length);
      });
      // QEMU sets the L2 entry at this point; ours is set once the data is written.
      img.file.event?.('l2_update_compressed');
      img.file.event?.('write_compressed');
      try {
        await img.file.write(at, packed);
      } catch (err) {
        for (const c of compressedClusters({ offset: at, length: packed.length }, img.layout)) this.rc.free(c);
        throw err;
      }
      await img.meta.run(async () => {
        const { off: l2off, view } = await this.l2.ready(l1i);
        const idx = img.layout.l2Index(offset);
        const old = img.readEntry(view, idx);
        // An extended entry's bitmap is clear: a compressed cluster has no subclusters.
        img.writeEntry(view, idx, encodeCompressed(at, packed.length, img.layout));
        this.l2.release(old);
        img.l2Cache.markDirty(l2off);
      });
    });
  }

  /** Byte-granular allocation for compressed data: packs streams into partly used clusters. */
  private async allocBytes(n: number): Promise<number> {
    const cs = this.cs;
    this.img.file.event?.('cluster_alloc_bytes');
    const cur = this.compressCursor;
    if (cur !== undefined && cs - (cur % cs) >= n && (await this.rc.tryIncrement(Math.floor(cur / cs)))) {
      this.compressCursor = (cur + n) % cs === 0 ? undefined : cur + n;
      return cur;
    }
    const at = (await this.rc.allocate(Math.ceil(n / cs), null, 'compressed cluster')) * cs;
    this.compressCursor = (at + n) % cs === 0 ? undefined : at + n;
    return at;
  }

  /** Freed clusters may be reused from now on: the cursor's cluster might be one of them. */
  forgetCompressCursor(): void {
    this.compressCursor = undefined;
  }
}
