import { BlockError } from '../errors.js';
import type { ByteFile, DebugEvent } from '../byte-file.js';
import { HDR_OFF_REFTABLE, MAX_REFTABLE_BYTES } from './header.js';
import { offsetHi, offsetLo, type Qcow2Layout, setEntry, viewOf } from './layout.js';
import { getRefcount, setRefcount } from './refcount-codec.js';
import { planTableGrowth, RefcountTable } from './refcount-table.js';
import { TableCache } from './table-cache.js';

/**
 * Reference counts of host clusters: the refcount table (kept whole in
 * memory), refcount blocks (through a bounded cache), cluster allocation and
 * deferred frees.
 *
 * Increments are applied at once (in the cache); decrements are only queued
 * (`free`) and applied by `applyFrees` after the tables that stopped
 * referencing the clusters are on disk. A freed cluster therefore cannot be
 * reused, nor its refcount drop on disk, while a stale on-disk reference to it
 * may still exist. See Qcow2Image.writeMetadata for the full write order.
 */
export class RefcountManager {
  private readonly blocks: TableCache;
  private readonly table: RefcountTable;
  /** Queued decrements: cluster index -> count. */
  private pendingFrees = new Map<number, number>();
  /** No free cluster below this index (allocation scans from here). */
  private freeCursor = 0;
  /** Clusters of fixed metadata besides the header and the refcount table (which this class knows). */
  private fixed: Array<{ what: string; start: number; end: number }> = [];
  /**
   * Told where the table went after growTable switched the header to it: the
   * image's in-memory header must follow, since whoever rewrites cluster 0
   * from it (storing bitmaps) would otherwise point it back at the freed table.
   */
  onTableMoved: ((offset: number, clusters: number) => void) | undefined;

  constructor(
    private readonly file: ByteFile,
    private readonly layout: Qcow2Layout,
    tableOffset: number,
    table: Uint8Array,
    private readonly filename: string,
    maxBlocks: number,
  ) {
    this.table = new RefcountTable(file, layout, tableOffset, table, filename);
    this.blocks = new TableCache(file, layout.clusterSize, maxBlocks, undefined, { write: 'refblock_update_part' });
  }

  static async load(file: ByteFile, layout: Qcow2Layout, tableOffset: number, tableClusters: number, filename: string, maxBlocks: number) {
    file.event?.('reftable_load');
    const table = await file.read(tableOffset, tableClusters * layout.clusterSize);
    return new RefcountManager(file, layout, tableOffset, table, filename, maxBlocks);
  }

  /**
   * Names the clusters holding fixed metadata (L1 table, snapshot table).
   * In a sound image their refcount is never 0; in a corrupt one it can be,
   * and handing them out would overwrite them (QEMU's overlap check refuses
   * such writes too). Allocation fails with a clear error instead.
   */
  setFixedMetadata(list: Array<{ what: string; start: number; end: number }>): void {
    this.fixed = list;
  }

  /** Whether a refcount block lies in the host bytes [start, end) (the metadata overlap check). */
  blockOverlaps(start: number, end: number): boolean {
    return this.table.blockOverlaps(start, end);
  }

  /**
   * Throws when cluster c, found free, holds metadata: the refcounts are
   * corrupt. `table` names a table being allocated: QEMU allocates it at
   * cluster 0 (the header's, which a corrupt refcount calls free) and then
   * refuses it as "Preventing invalid allocation of <table> at offset 0".
   */
  private checkFree(c: number, table?: string): void {
    if (c === 0 && table !== undefined) {
      const message = `Preventing invalid allocation of ${table} at offset 0`;
      throw this.table.onCorrupt?.(message) ?? new BlockError('INVALID_IMAGE', `'${this.filename}': ${message}`, { errno: 'EIO' });
    }
    const tableStart = this.table.offset / this.layout.clusterSize;
    const hit =
      c === 0
        ? 'qcow2 header'
        : c >= tableStart && c < tableStart + this.table.clusters
          ? 'refcount table'
          : this.fixed.find((f) => c >= f.start && c < f.end)?.what;
    if (hit !== undefined) {
      // Where the image can tell (its overlap check), QEMU's own finding: the write that would land there is a fatal corruption.
      const cs = this.layout.clusterSize;
      const signaled = this.onOverlap?.(c * cs, cs);
      if (signaled) throw signaled;
      throw new BlockError(
        'INVALID_IMAGE',
        `'${this.filename}': cluster ${c} holds the ${hit} but its refcount is 0; the image is corrupt (repair it with 'blockemu img check -r all')`,
        { errno: 'EIO' },
      );
    }
  }

  /**
   * The image's pre-write overlap check for a cluster the refcounts call
   * free: the corruption it signals, or undefined when it sees nothing there.
   */
  onOverlap: ((offset: number, size: number) => BlockError | undefined) | undefined;

  /** The image's pre-write overlap check of a refcount block's write (set by the image). */
  set checkBlockWrite(check: ((offset: number, size: number) => Promise<void>) | undefined) {
    this.blocks.checkWrite = check;
  }

  /** Reports corruption found in the refcount structure (the image's qcow2_signal_corruption); set by the image. */
  set onCorrupt(report: ((message: string) => BlockError) | undefined) {
    this.table.onCorrupt = report;
  }

  get tableEntries(): number {
    return this.table.entries;
  }

  /** Host offset of refcount block `rt` (0: none), for walks over the structure (a refcount width change). */
  blockOffsetAt(rt: number): number {
    return rt < this.table.entries ? this.table.blockOffset(rt) : 0;
  }

  /** Where the refcount table lives now (allocations may move it). */
  get tableOffset(): number {
    return this.table.offset;
  }

  private getIn(block: Uint8Array, i: number): number {
    return getRefcount(block, i, this.layout.refcountBits);
  }

  private setIn(block: Uint8Array, i: number, value: number): void {
    setRefcount(block, i, this.layout.refcountBits, value);
  }

  /** Refcount block `rt` as it stands now (cached, or read), undefined when its range has none: for walks that count. */
  async blockAt(rt: number): Promise<Uint8Array | undefined> {
    const off = this.blockOffsetAt(rt);
    if (off === 0) return undefined;
    return this.blocks.peek(off) ?? (await this.blocks.get(off));
  }

  async get(cluster: number): Promise<number> {
    const off = this.table.blockOffset(Math.floor(cluster / this.layout.refblockEntries));
    if (off === 0) return 0;
    const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
    return this.getIn(block, cluster % this.layout.refblockEntries);
  }

  /** An update is about to change an existing refcount block (QEMU's alloc_refcount_block finding it, then load_refcount_block). */
  private touching(): void {
    this.file.event?.('refblock_alloc');
    this.file.event?.('refblock_load');
  }

  /**
   * update_refcount on a cluster with no refcount block (a corrupt L2 entry
   * pointing far past the file, as iotest 080 pokes): QEMU's
   * alloc_refcount_block then grows the structure and asks to be called
   * again (EAGAIN), which a snapshot's refcount update does not do, or finds
   * the table would pass its limit (EFBIG). The error is the same here; the
   * structure is left as it is.
   */
  private missingBlock(rt: number): BlockError {
    const cs = this.layout.clusterSize;
    if (rt >= this.table.entries && Math.ceil(((rt + 1) * 8) / cs) * cs > MAX_REFTABLE_BYTES) return new BlockError('IO', 'File too large', { errno: 'EFBIG' });
    return new BlockError('IO', 'Resource temporarily unavailable', { errno: 'EAGAIN' });
  }

  /** Adds `delta` to a cluster whose refcount block exists. */
  private async adjust(cluster: number, delta: number): Promise<void> {
    const rt = Math.floor(cluster / this.layout.refblockEntries);
    const off = this.table.blockOffset(rt);
    if (off === 0) throw this.missingBlock(rt);
    this.touching();
    const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
    const i = cluster % this.layout.refblockEntries;
    const v = this.getIn(block, i) + delta;
    if (v < 0) throw new BlockError('INVALID_IMAGE', `'${this.filename}': refcount of cluster ${cluster} would drop below zero`);
    if (v > this.layout.maxRefcount) throw new BlockError('INVALID_ARGUMENT', `'${this.filename}': refcount overflow for cluster ${cluster}`);
    this.setIn(block, i, v);
    this.blocks.markDirty(off);
  }

  /** +1 on clusters [start, start+n), whose refcount blocks exist; one block lookup per block. */
  private async incrementRange(start: number, n: number): Promise<void> {
    const E = this.layout.refblockEntries;
    for (let c = start; c < start + n; ) {
      const rt = Math.floor(c / E);
      const off = this.table.blockOffset(rt);
      this.touching();
      const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
      for (const end = Math.min(start + n, (rt + 1) * E); c < end; c++) {
        const v = this.getIn(block, c % E) + 1;
        if (v > this.layout.maxRefcount) throw new BlockError('INVALID_ARGUMENT', `'${this.filename}': refcount overflow for cluster ${c}`);
        this.setIn(block, c % E, v);
      }
      this.blocks.markDirty(off);
    }
  }

  /**
   * make_completely_empty's allocation on a new, empty refcount structure:
   * the clusters the image's own metadata now fills from the start
   * (header, refcount table and block, L1 table), counted 1 each. Not
   * allocate(): those clusters are in use already, only not yet counted.
   */
  async claimLeading(n: number): Promise<void> {
    this.file.event?.('cluster_alloc');
    await this.incrementRange(0, n);
    this.freeCursor = n;
  }

  /** +1 on a cluster already in use (e.g. one more compressed cluster sharing it). False when at the maximum. */
  async tryIncrement(cluster: number): Promise<boolean> {
    if ((await this.get(cluster)) >= this.layout.maxRefcount) return false;
    await this.adjust(cluster, 1);
    return true;
  }

  /**
   * Adds `delta` now, decrements included (QEMU's update_refcount for a
   * snapshot's clusters): only for callers that know no table on disk
   * still needs a cluster whose count drops to 0. Returns the new count.
   */
  async change(cluster: number, delta: number): Promise<number> {
    await this.adjust(cluster, delta);
    const v = await this.get(cluster);
    if (v === 0) this.freeCursor = Math.min(this.freeCursor, cluster);
    return v;
  }

  /** Queues a decrement; applied by applyFrees once no on-disk table references the cluster. */
  free(cluster: number, count = 1): void {
    this.file.event?.('cluster_free');
    this.pendingFrees.set(cluster, (this.pendingFrees.get(cluster) ?? 0) + count);
  }

  /**
   * Frees clusters that no table ever referenced — an allocation that
   * failed before its L2 entries were set (qcow2_alloc_cluster_abort) — at
   * once, as QEMU does: nothing on disk can point there, so the next
   * allocation may take them again.
   */
  async freeUnreferenced(cluster: number, count: number): Promise<void> {
    this.file.event?.('cluster_free');
    for (let i = 0; i < count; i++) await this.change(cluster + i, -1);
  }

  hasPendingFrees(): boolean {
    return this.pendingFrees.size > 0;
  }

  /**
   * Allocates `n` contiguous clusters (refcount 1 each) and returns the index
   * of the first. Missing refcount blocks are created (placed inside the range
   * they describe) and the refcount table grows when it must. `event` is
   * what the allocation announces first (none for the clusters of a
   * compressed write, which announces its own). `table` names what is
   * allocated where QEMU refuses cluster 0 for it (see checkFree).
   */
  async allocate(n: number, event: DebugEvent | null = 'cluster_alloc', table?: 'L2 table' | 'compressed cluster'): Promise<number> {
    if (event) this.file.event?.(event);
    // Into a range without a block: QEMU's placement, the block after the clusters (alloc_refcount_block's).
    if (event === 'cluster_alloc' && n < this.layout.refblockEntries) {
      const across = await this.runIntoNewBlock(n, true, table);
      if (across) return across.start;
    }
    // A block at the start of every range it describes splits free space into
    // runs shorter than a range: a longer one only fits past the end.
    if (n >= this.layout.refblockEntries) return this.allocateAtEnd(n);
    for (;;) {
      const start = await this.findFree(n, true, table);
      const firstRt = Math.floor(start / this.layout.refblockEntries);
      const lastRt = Math.floor((start + n - 1) / this.layout.refblockEntries);
      let missing = -1;
      for (let rt = firstRt; rt <= lastRt; rt++) {
        if (this.table.blockOffset(rt) === 0) {
          missing = rt;
          break;
        }
      }
      if (missing < 0) {
        await this.incrementRange(start, n);
        if (start === this.freeCursor) this.freeCursor = start + n;
        return start;
      }
      if (missing >= this.tableEntries) await this.growTable(missing);
      else await this.createBlock(missing);
    }
  }

  /**
   * `n` contiguous clusters after the last one in use (QEMU's
   * qcow2_refcount_area does the same for a large area), preceded by the
   * refcount blocks of the ranges they reach that have none. Those blocks
   * describe each other and the run, wherever the ranges start, so the run
   * need not fit in one range (an L1 table of 512 B clusters can span
   * dozens). Everything is counted in the cache and written by writeBack,
   * blocks before the table entries that name them.
   */
  private async allocateAtEnd(n: number): Promise<number> {
    const E = this.layout.refblockEntries;
    for (;;) {
      const start = (await this.lastUsedCluster()) + 1;
      const missing = this.table.rangesToCover(start, n);
      const lastRt = Math.floor((start + missing.length + n - 1) / E);
      if (lastRt >= this.tableEntries) {
        await this.growTable(lastRt);
        continue;
      }
      for (let i = 0; i < missing.length; i++) {
        const off = (start + i) * this.layout.clusterSize;
        await this.blocks.create(off);
        this.table.setBlock(missing[i]!, off);
      }
      await this.incrementRange(start, missing.length + n);
      return start + missing.length;
    }
  }

  /**
   * The highest cluster below `limit` (default: all of them) whose refcount
   * is not 0, or -1 (qcow2_get_last_cluster). Clusters waiting in
   * pendingFrees still count: they are in use until the frees are applied.
   */
  async lastUsedCluster(limit = this.tableEntries * this.layout.refblockEntries): Promise<number> {
    const E = this.layout.refblockEntries;
    for (let rt = Math.min(this.tableEntries, Math.ceil(limit / E)) - 1; rt >= 0; rt--) {
      const off = this.table.blockOffset(rt);
      if (off === 0) continue;
      const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
      for (let i = Math.min(E, limit - rt * E) - 1; i >= 0; i--) if (this.getIn(block, i) !== 0) return rt * E + i;
    }
    return -1;
  }

  /**
   * Takes out of the table the refcount blocks that count nothing but
   * maybe themselves (qcow2_shrink_reftable, after a shrink freed what they
   * counted). The table goes to disk without them first, then each block's
   * own cluster is freed: queued when another block counts it (applied, as
   * always, after the next barrier), gone with its range when it counted
   * itself. Call with no frees pending and nothing dirty (after
   * Qcow2Image.writeMetadata), so the blocks read are what the disk holds.
   */
  async dropUnusedBlocks(): Promise<void> {
    const E = this.layout.refblockEntries;
    const cs = this.layout.clusterSize;
    const dropped: number[] = [];
    for (let rt = 0; rt < this.tableEntries; rt++) {
      const off = this.table.blockOffset(rt);
      if (off === 0) continue;
      const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
      const self = Math.floor(off / cs / E) === rt ? (off / cs) % E : -1;
      let unused = true;
      for (let i = 0; i < E && unused; i++) if (i !== self && this.getIn(block, i) !== 0) unused = false;
      if (unused) dropped.push(rt);
    }
    if (dropped.length === 0) return;
    const offsets = dropped.map((rt) => this.table.blockOffset(rt));
    for (const rt of dropped) this.table.setBlock(rt, 0);
    await this.table.writeBack();
    await this.file.flush();
    dropped.forEach((rt, i) => {
      const c = offsets[i]! / cs;
      this.blocks.drop(offsets[i]!);
      if (Math.floor(c / E) !== rt) this.free(c);
      this.freeCursor = Math.min(this.freeCursor, rt * E);
    });
  }

  /**
   * Allocates up to `max` contiguous clusters starting at the lowest free one
   * (as QEMU does for guest data): holes are refilled, and a run stops where
   * a cluster is in use or its refcount block does not exist yet. Exact
   * long runs cannot be demanded: self-describing refcount blocks sit at the
   * start of every range, so with small clusters and wide refcounts no free
   * run is longer than one range.
   */
  async allocateRun(max: number): Promise<{ start: number; count: number }> {
    const across = await this.runIntoNewBlock(max);
    if (across) return across;
    const start = await this.allocate(1);
    const E = this.layout.refblockEntries;
    let count = 1;
    while (count < max) {
      const c = start + count;
      const off = this.table.blockOffset(Math.floor(c / E));
      if (off === 0) break;
      const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
      const end = Math.min(start + max, (Math.floor(c / E) + 1) * E);
      let n = 0;
      while (c + n < end && this.getIn(block, (c + n) % E) === 0 && !this.pendingFrees.has(c + n)) this.checkFree(c + n++);
      if (n === 0) break;
      await this.incrementRange(c, n);
      count += n;
      if (c + n < end) break;
    }
    if (this.freeCursor === start + 1) this.freeCursor = start + count;
    return { start, count };
  }

  /**
   * A run that reaches into a range with no refcount block yet, placed as
   * QEMU places it: qcow2_alloc_clusters takes the whole run, then
   * alloc_refcount_block puts the new block at the first free cluster after
   * the run, where it describes itself (so the run stays contiguous and the
   * image's layout, and its end once the data is freed, is QEMU's).
   * Undefined when the run reaches no such range, or the block would fall
   * outside it: allocate's placement then.
   */
  private async runIntoNewBlock(max: number, announced = false, table?: string): Promise<{ start: number; count: number } | undefined> {
    const E = this.layout.refblockEntries;
    // The run's own clusters are checked once the block's place is known: QEMU writes the block before the data.
    const start = await this.findFree(1, false, table);
    let count = 0;
    let missing = -1;
    while (count < max && missing < 0) {
      const c = start + count;
      const rt = Math.floor(c / E);
      if (rt >= this.tableEntries) return undefined;
      const end = Math.min(start + max, (rt + 1) * E);
      const off = this.table.blockOffset(rt);
      if (off === 0) {
        missing = rt;
        count = end - start;
        break;
      }
      const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
      let n = 0;
      while (c + n < end && this.getIn(block, (c + n) % E) === 0 && !this.pendingFrees.has(c + n)) this.checkFree(c + n++);
      count += n;
      if (c + n < end || n === 0) break;
    }
    const own = start + count;
    if (missing < 0 || Math.floor(own / E) !== missing) return undefined;
    this.checkFree(own);
    this.checkFree(start, table);
    this.checkFree(missing * E);
    if (!announced) this.file.event?.('cluster_alloc');
    this.file.event?.('refblock_alloc');
    this.file.event?.('refblock_alloc_write');
    this.file.event?.('refblock_alloc_hookup');
    const off = own * this.layout.clusterSize;
    const block = await this.blocks.create(off);
    this.setIn(block, own % E, 1);
    this.table.setBlock(missing, off);
    await this.incrementRange(start, count);
    if (this.freeCursor === start) this.freeCursor = own + 1;
    return { start, count };
  }

  /**
   * First run of n clusters with refcount 0 at or after the cursor. The
   * cursor moves past clusters found in use and stops at the first hole. The
   * scan reads each refcount block once.
   */
  private async findFree(n: number, check = true, table?: string): Promise<number> {
    const E = this.layout.refblockEntries;
    let c = this.freeCursor;
    let advancing = true;
    let start = c;
    let run = 0;
    for (;;) {
      const rt = Math.floor(c / E);
      const off = rt < this.tableEntries ? this.table.blockOffset(rt) : 0;
      if (off === 0) {
        // No refcount block: this cluster and the rest of its range are free
        // (the block itself will go at the range's first cluster).
        if (check) {
          this.checkFree(rt * E);
          this.checkFree(c, table);
        }
        if (run === 0) start = c;
        if (advancing) this.freeCursor = start;
        return start;
      }
      const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
      for (const end = (rt + 1) * E; c < end; c++) {
        if (this.getIn(block, c % E) === 0 && !this.pendingFrees.has(c)) {
          this.checkFree(c, table);
          if (run === 0) start = c;
          if (++run === n) {
            if (advancing) this.freeCursor = start;
            return start;
          }
        } else {
          if (advancing && run === 0) this.freeCursor = c + 1;
          else advancing = false;
          run = 0;
        }
      }
    }
  }

  /** A new refcount block for table entry rt, self-describing at the start of its own range. */
  private async createBlock(rt: number): Promise<void> {
    this.file.event?.('refblock_alloc');
    this.file.event?.('refblock_alloc_write');
    this.file.event?.('refblock_alloc_hookup');
    const cluster = rt * this.layout.refblockEntries;
    const off = cluster * this.layout.clusterSize;
    const block = await this.blocks.create(off);
    this.setIn(block, 0, 1);
    this.table.setBlock(rt, off);
  }

  /**
   * Moves the refcount table to a bigger one. The new table and the refcount
   * blocks describing it go at the start of the first range the old table
   * cannot describe. Order: dirty blocks, new blocks and new table written and
   * flushed, then the header's 12 bytes switch to it in one write, flushed;
   * the old table's clusters are freed like any others.
   */
  private async growTable(needed: number): Promise<void> {
    this.file.event?.('refblock_alloc');
    this.file.event?.('reftable_grow');
    const L = this.layout;
    const oldEntries = this.tableEntries;
    const areaStart = oldEntries * L.refblockEntries;
    const { blocks, tableClusters } = planTableGrowth(L, oldEntries, needed);
    if (tableClusters * L.clusterSize > MAX_REFTABLE_BYTES) {
      throw new BlockError('INVALID_ARGUMENT', `'${this.filename}': the image is too large: the refcount table would exceed ${MAX_REFTABLE_BYTES} bytes`);
    }
    await this.writeBack();

    const newTable = new Uint8Array(tableClusters * L.clusterSize);
    newTable.set(this.table.content);
    const newView = viewOf(newTable);
    const used = blocks + tableClusters;
    const newBlocks: Uint8Array[] = [];
    this.file.event?.('refblock_alloc_write_blocks');
    for (let b = 0; b < blocks; b++) {
      const block = new Uint8Array(L.clusterSize);
      for (let i = 0; i < L.refblockEntries && b * L.refblockEntries + i < used; i++) this.setIn(block, i, 1);
      newBlocks.push(block);
      const off = (areaStart + b) * L.clusterSize;
      setEntry(newView, oldEntries + b, offsetHi(off), offsetLo(off));
      await this.file.write(off, block);
    }
    const tableOffset = (areaStart + blocks) * L.clusterSize;
    this.file.event?.('refblock_alloc_write_table');
    await this.file.write(tableOffset, newTable);
    await this.file.flush();
    const hdr = new Uint8Array(12);
    const hv = viewOf(hdr);
    hv.setBigUint64(0, BigInt(tableOffset));
    hv.setUint32(8, tableClusters);
    this.file.event?.('refblock_alloc_switch_table');
    await this.file.write(HDR_OFF_REFTABLE, hdr);
    await this.file.flush();

    const oldOffset = this.table.offset;
    const oldClusters = this.table.clusters;
    this.table.replace(tableOffset, newTable);
    this.onTableMoved?.(tableOffset, tableClusters);
    for (let b = 0; b < blocks; b++) await this.blocks.insertClean((areaStart + b) * L.clusterSize, newBlocks[b]!);
    for (let c = 0; c < oldClusters; c++) this.free(oldOffset / L.clusterSize + c);
  }

  /** Writes dirty refcount blocks, then dirty table entries. True when anything was written. */
  /** qcow2_update_options_commit's new refcount block cache: blocks are read again from the file (a clean cache only). */
  dropBlockCache(): void {
    if (!this.blocks.hasDirty()) this.blocks.clear();
  }

  async writeBack(): Promise<boolean> {
    const wroteBlocks = await this.blocks.writeDirty();
    return (await this.table.writeBack()) || wroteBlocks;
  }

  /** Applies queued decrements to the cached blocks; freed clusters become allocatable again. */
  async applyFrees(): Promise<void> {
    if (this.pendingFrees.size === 0) return;
    const frees = [...this.pendingFrees];
    this.pendingFrees.clear();
    for (const [cluster, count] of frees) {
      await this.adjust(cluster, -count);
      if ((await this.get(cluster)) === 0) this.freeCursor = Math.min(this.freeCursor, cluster);
    }
  }

  hasDirty(): boolean {
    return this.blocks.hasDirty() || this.table.hasDirty();
  }
}
