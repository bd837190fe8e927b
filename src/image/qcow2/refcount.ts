import { BlockError } from '../errors.js';
import type { ByteFile } from '../byte-file.js';
import { HDR_OFF_REFTABLE, MAX_REFTABLE_BYTES } from './header.js';
import { entryHi, entryLo, entryOffset, L1_RESERVED_LO, offsetHi, offsetLo, type Qcow2Layout, setEntry, viewOf } from './layout.js';
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
  /** The refcount table, big-endian as on disk. */
  private table: Uint8Array;
  private tableView: DataView;
  private dirtyTableEntries = new Set<number>();
  /** Queued decrements: cluster index -> count. */
  private pendingFrees = new Map<number, number>();
  /** No free cluster below this index (allocation scans from here). */
  private freeCursor = 0;
  /** Clusters of fixed metadata besides the header and the refcount table (which this class knows). */
  private fixed: Array<{ what: string; start: number; end: number }> = [];

  constructor(
    private readonly file: ByteFile,
    private readonly layout: Qcow2Layout,
    private tableOffset: number,
    table: Uint8Array,
    private readonly filename: string,
    maxBlocks: number,
  ) {
    this.table = table;
    this.tableView = viewOf(table);
    this.blocks = new TableCache(file, layout.clusterSize, maxBlocks, { load: 'refblock_load', update: 'refblock_update_part' });
  }

  static async load(file: ByteFile, layout: Qcow2Layout, tableOffset: number, tableClusters: number, filename: string, maxBlocks: number) {
    file.announce?.('reftable_load');
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

  /** Throws when cluster c, found free, holds metadata: the refcounts are corrupt. */
  private checkFree(c: number): void {
    const tableStart = this.tableOffset / this.layout.clusterSize;
    const hit =
      c === 0
        ? 'qcow2 header'
        : c >= tableStart && c < tableStart + this.table.length / this.layout.clusterSize
          ? 'refcount table'
          : this.fixed.find((f) => c >= f.start && c < f.end)?.what;
    if (hit !== undefined) {
      throw new BlockError(
        'INVALID_IMAGE',
        `'${this.filename}': cluster ${c} holds the ${hit} but its refcount is 0; the image is corrupt (repair it with 'blockemu img check -r all')`,
        { errno: 'EIO' },
      );
    }
  }

  get tableEntries(): number {
    return this.table.length / 8;
  }

  private blockOffset(rtIndex: number): number {
    if (rtIndex >= this.tableEntries) return 0;
    const hi = entryHi(this.tableView, rtIndex);
    const lo = entryLo(this.tableView, rtIndex);
    const off = entryOffset(hi, lo);
    if (off !== 0 && ((lo & L1_RESERVED_LO) !== 0 || off % this.layout.clusterSize !== 0)) {
      throw new BlockError('INVALID_IMAGE', `'${this.filename}': refcount table entry ${rtIndex} is corrupt (offset 0x${off.toString(16)})`);
    }
    if (off !== 0 && off < this.layout.clusterSize) {
      throw new BlockError('INVALID_IMAGE', `'${this.filename}': refcount block ${rtIndex} overlaps the qcow2 header`);
    }
    return off;
  }

  /** Reads entry i of a refcount block of any width (1..64 bits; sub-byte widths LSB first). */
  private getIn(block: Uint8Array, i: number): number {
    const bits = this.layout.refcountBits;
    switch (bits) {
      case 16:
        return (block[i * 2]! << 8) | block[i * 2 + 1]!;
      case 8:
        return block[i]!;
      case 32:
        return viewOf(block).getUint32(i * 4);
      case 64: {
        const v = viewOf(block).getBigUint64(i * 8);
        return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
      }
      default: {
        const bit = i * bits;
        return (block[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1);
      }
    }
  }

  private setIn(block: Uint8Array, i: number, value: number): void {
    const bits = this.layout.refcountBits;
    switch (bits) {
      case 16:
        block[i * 2] = value >> 8;
        block[i * 2 + 1] = value & 0xff;
        return;
      case 8:
        block[i] = value;
        return;
      case 32:
        viewOf(block).setUint32(i * 4, value);
        return;
      case 64:
        viewOf(block).setBigUint64(i * 8, BigInt(value));
        return;
      default: {
        const bit = i * bits;
        const mask = ((1 << bits) - 1) << (bit & 7);
        block[bit >> 3] = (block[bit >> 3]! & ~mask) | ((value << (bit & 7)) & mask);
      }
    }
  }

  async get(cluster: number): Promise<number> {
    const off = this.blockOffset(Math.floor(cluster / this.layout.refblockEntries));
    if (off === 0) return 0;
    const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
    return this.getIn(block, cluster % this.layout.refblockEntries);
  }

  /** Adds `delta` to a cluster whose refcount block exists. */
  private async adjust(cluster: number, delta: number): Promise<void> {
    const rt = Math.floor(cluster / this.layout.refblockEntries);
    const off = this.blockOffset(rt);
    if (off === 0) throw new BlockError('INVALID_IMAGE', `'${this.filename}': no refcount block for cluster ${cluster}`);
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
      const off = this.blockOffset(rt);
      const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
      for (const end = Math.min(start + n, (rt + 1) * E); c < end; c++) {
        const v = this.getIn(block, c % E) + 1;
        if (v > this.layout.maxRefcount) throw new BlockError('INVALID_ARGUMENT', `'${this.filename}': refcount overflow for cluster ${c}`);
        this.setIn(block, c % E, v);
      }
      this.blocks.markDirty(off);
    }
  }

  /** +1 on a cluster already in use (e.g. one more compressed cluster sharing it). False when at the maximum. */
  async tryIncrement(cluster: number): Promise<boolean> {
    if ((await this.get(cluster)) >= this.layout.maxRefcount) return false;
    await this.adjust(cluster, 1);
    return true;
  }

  /** Queues a decrement; applied by applyFrees once no on-disk table references the cluster. */
  free(cluster: number, count = 1): void {
    this.pendingFrees.set(cluster, (this.pendingFrees.get(cluster) ?? 0) + count);
  }

  hasPendingFrees(): boolean {
    return this.pendingFrees.size > 0;
  }

  /**
   * Allocates `n` contiguous clusters (refcount 1 each) and returns the index
   * of the first. Missing refcount blocks are created (placed inside the range
   * they describe) and the refcount table grows when it must.
   */
  async allocate(n: number): Promise<number> {
    for (;;) {
      const start = await this.findFree(n);
      const firstRt = Math.floor(start / this.layout.refblockEntries);
      const lastRt = Math.floor((start + n - 1) / this.layout.refblockEntries);
      let missing = -1;
      for (let rt = firstRt; rt <= lastRt; rt++) {
        if (this.blockOffset(rt) === 0) {
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
   * Allocates up to `max` contiguous clusters starting at the lowest free one
   * (as QEMU does for guest data): holes are refilled, and a run stops where
   * a cluster is in use or its refcount block does not exist yet. Exact
   * long runs cannot be demanded: self-describing refcount blocks sit at the
   * start of every range, so with small clusters and wide refcounts no free
   * run is longer than one range.
   */
  async allocateRun(max: number): Promise<{ start: number; count: number }> {
    const start = await this.allocate(1);
    const E = this.layout.refblockEntries;
    let count = 1;
    while (count < max) {
      const c = start + count;
      const off = this.blockOffset(Math.floor(c / E));
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
   * First run of n clusters with refcount 0 at or after the cursor. The
   * cursor moves past clusters found in use and stops at the first hole. The
   * scan reads each refcount block once.
   */
  private async findFree(n: number): Promise<number> {
    const E = this.layout.refblockEntries;
    let c = this.freeCursor;
    let advancing = true;
    let start = c;
    let run = 0;
    for (;;) {
      const rt = Math.floor(c / E);
      const off = rt < this.tableEntries ? this.blockOffset(rt) : 0;
      if (off === 0) {
        // No refcount block: this cluster and the rest of its range are free
        // (the block itself will go at the range's first cluster).
        this.checkFree(rt * E);
        this.checkFree(c);
        if (run === 0) start = c;
        if (advancing) this.freeCursor = start;
        return start;
      }
      const block = this.blocks.peek(off) ?? (await this.blocks.get(off));
      for (const end = (rt + 1) * E; c < end; c++) {
        if (this.getIn(block, c % E) === 0 && !this.pendingFrees.has(c)) {
          this.checkFree(c);
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
    const cluster = rt * this.layout.refblockEntries;
    const off = cluster * this.layout.clusterSize;
    const block = await this.blocks.create(off);
    this.setIn(block, 0, 1);
    setEntry(this.tableView, rt, offsetHi(off), offsetLo(off));
    this.dirtyTableEntries.add(rt);
  }

  /**
   * Moves the refcount table to a bigger one. The new table and the refcount
   * blocks describing it go at the start of the first range the old table
   * cannot describe. Order: dirty blocks, new blocks and new table written and
   * flushed, then the header's 12 bytes switch to it in one write, flushed;
   * the old table's clusters are freed like any others.
   */
  private async growTable(needed: number): Promise<void> {
    const L = this.layout;
    const oldEntries = this.tableEntries;
    const areaStart = oldEntries * L.refblockEntries;
    let blocks = 1;
    let tableClusters = 1;
    let entries = 0;
    for (let iter = 0; iter < 64; iter++) {
      const areaEnd = areaStart + blocks + tableClusters;
      entries = Math.max(oldEntries * 2, needed + 1, Math.ceil(areaEnd / L.refblockEntries) + 1);
      const tc = Math.ceil((entries * 8) / L.clusterSize);
      const b = Math.ceil((blocks + tc) / L.refblockEntries);
      if (tc === tableClusters && b === blocks) break;
      tableClusters = tc;
      blocks = b;
    }
    entries = (tableClusters * L.clusterSize) / 8;
    if (tableClusters * L.clusterSize > MAX_REFTABLE_BYTES) {
      throw new BlockError('INVALID_ARGUMENT', `'${this.filename}': the image is too large: the refcount table would exceed ${MAX_REFTABLE_BYTES} bytes`);
    }
    await this.writeBack();

    const newTable = new Uint8Array(tableClusters * L.clusterSize);
    newTable.set(this.table);
    const newView = viewOf(newTable);
    const used = blocks + tableClusters;
    const newBlocks: Uint8Array[] = [];
    for (let b = 0; b < blocks; b++) {
      const block = new Uint8Array(L.clusterSize);
      for (let i = 0; i < L.refblockEntries && b * L.refblockEntries + i < used; i++) this.setIn(block, i, 1);
      newBlocks.push(block);
      const off = (areaStart + b) * L.clusterSize;
      setEntry(newView, oldEntries + b, offsetHi(off), offsetLo(off));
      this.file.announce?.('refblock_alloc_write_blocks');
      await this.file.write(off, block);
    }
    const tableOffset = (areaStart + blocks) * L.clusterSize;
    this.file.announce?.('refblock_alloc_write_table');
    await this.file.write(tableOffset, newTable);
    await this.file.flush();
    const hdr = new Uint8Array(12);
    const hv = viewOf(hdr);
    hv.setBigUint64(0, BigInt(tableOffset));
    hv.setUint32(8, tableClusters);
    this.file.announce?.('refblock_alloc_switch_table');
    await this.file.write(HDR_OFF_REFTABLE, hdr);
    await this.file.flush();

    const oldOffset = this.tableOffset;
    const oldClusters = this.table.length / L.clusterSize;
    this.table = newTable;
    this.tableView = newView;
    this.tableOffset = tableOffset;
    this.dirtyTableEntries.clear();
    for (let b = 0; b < blocks; b++) await this.blocks.insertClean((areaStart + b) * L.clusterSize, newBlocks[b]!);
    for (let c = 0; c < oldClusters; c++) this.free(oldOffset / L.clusterSize + c);
  }

  /** Writes dirty refcount blocks, then dirty table entries. True when anything was written. */
  async writeBack(): Promise<boolean> {
    const wroteBlocks = await this.blocks.writeDirty();
    if (this.dirtyTableEntries.size === 0) return wroteBlocks;
    const entries = [...this.dirtyTableEntries].sort((a, b) => a - b);
    this.dirtyTableEntries.clear();
    // Contiguous dirty entries go out in one write.
    for (let i = 0; i < entries.length; ) {
      let j = i;
      while (j + 1 < entries.length && entries[j + 1] === entries[j]! + 1) j++;
      const from = entries[i]! * 8;
      const to = (entries[j]! + 1) * 8;
      this.file.announce?.('refblock_alloc_hookup');
      await this.file.write(this.tableOffset + from, this.table.subarray(from, to));
      i = j + 1;
    }
    return true;
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
    return this.blocks.hasDirty() || this.dirtyTableEntries.size > 0;
  }
}
