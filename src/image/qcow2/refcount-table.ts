import { isZero } from '../request.js';
import { BlockError } from '../errors.js';
import { hex } from './corruption.js';
import type { ByteFile } from '../byte-file.js';
import { entryHi, entryLo, entryOffset, L1_RESERVED_LO, offsetHi, offsetLo, type Qcow2Layout, setEntry, viewOf } from './layout.js';

/**
 * The refcount table of an open image, kept whole in memory: which
 * refcount block describes each range of host clusters. Entries changed in
 * memory are written by writeBack (RefcountManager calls it after the
 * blocks they point at, see Qcow2Image.writeMetadata). Moving the table
 * (growth) is RefcountManager's; this class only swaps the copy it holds.
 */
export class RefcountTable {
  /** Reports an unaligned block offset as the image's corruption (set by the image through its RefcountManager). */
  onCorrupt: ((message: string) => BlockError) | undefined;
  private bytes: Uint8Array;
  private view: DataView;
  private readonly dirty = new Set<number>();

  constructor(
    private readonly file: ByteFile,
    private readonly layout: Qcow2Layout,
    private at: number,
    table: Uint8Array,
    private readonly filename: string,
  ) {
    this.bytes = table;
    this.view = viewOf(table);
  }

  get offset(): number {
    return this.at;
  }
  get entries(): number {
    return this.bytes.length / 8;
  }
  get clusters(): number {
    return this.bytes.length / this.layout.clusterSize;
  }
  /** The table's bytes (growTable copies them into the bigger table). */
  get content(): Uint8Array {
    return this.bytes;
  }

  /** Offset of the refcount block for range `rt`, 0 when it has none (every cluster of it free). */
  blockOffset(rt: number): number {
    if (rt >= this.entries) return 0;
    const hi = entryHi(this.view, rt);
    const lo = entryLo(this.view, rt);
    const off = entryOffset(hi, lo);
    if (off !== 0 && (lo & L1_RESERVED_LO) !== 0) {
      throw new BlockError('INVALID_IMAGE', `'${this.filename}': refcount table entry ${rt} is corrupt (offset 0x${off.toString(16)})`);
    }
    if (off % this.layout.clusterSize !== 0) {
      // QEMU's refcount paths signal this one as corruption (the image is marked and retired).
      const message = `Refblock offset ${hex(off)} unaligned (reftable index: ${hex(rt)})`;
      throw this.onCorrupt?.(message) ?? new BlockError('INVALID_IMAGE', `'${this.filename}': ${message}`, { errno: 'EIO' });
    }
    if (off !== 0 && off < this.layout.clusterSize) {
      throw new BlockError('INVALID_IMAGE', `'${this.filename}': refcount block ${rt} overlaps the qcow2 header`);
    }
    return off;
  }

  /**
   * The ranges without a block that an area of `k` new blocks followed by
   * `n` clusters, starting at cluster `start`, reaches, where k is their
   * number: each new block may reach one more range, so k only grows and
   * settles. Ranges past the table are included (the table must grow).
   */
  rangesToCover(start: number, n: number): number[] {
    const E = this.layout.refblockEntries;
    const missing: number[] = [];
    for (let k = -1; k !== missing.length; ) {
      k = missing.length;
      missing.length = 0;
      for (let rt = Math.floor(start / E); rt <= Math.floor((start + k + n - 1) / E); rt++) if (this.blockOffset(rt) === 0) missing.push(rt);
    }
    return missing;
  }

  /** Points entry `rt` at a block (0: none), to be written by writeBack. */
  setBlock(rt: number, off: number): void {
    setEntry(this.view, rt, offsetHi(off), offsetLo(off));
    this.dirty.add(rt);
    this.lastUsed = undefined;
  }

  /** The last entry naming a block (QEMU's max_refcount_table_index), found again after a change. */
  private lastUsed: number | undefined;

  /** Whether a block the table names lies in the host bytes [start, end): a write there would overwrite it. */
  blockOverlaps(start: number, end: number): boolean {
    const cs = this.layout.clusterSize;
    if (this.lastUsed === undefined) {
      // A table is mostly zeroes past its last block: skip them a 4 KiB block at a time (a native compare),
      // not entry by entry (a cold start of a tool spent milliseconds here on a 64 KiB table).
      let bytes = this.entries * 8;
      while (bytes >= 4096 && isZero(this.bytes, bytes - 4096, bytes)) bytes -= 4096;
      let last = Math.floor(bytes / 8) - 1;
      while (last >= 0 && entryOffset(entryHi(this.view, last), entryLo(this.view, last)) === 0) last--;
      this.lastUsed = last;
    }
    for (let rt = 0; rt <= this.lastUsed; rt++) {
      const off = entryOffset(entryHi(this.view, rt), entryLo(this.view, rt));
      if (off !== 0 && off < end && start < off + cs) return true;
    }
    return false;
  }

  /** Holds `table`, already written at `offset` and named by the header, from now on. */
  replace(offset: number, table: Uint8Array): void {
    this.at = offset;
    this.bytes = table;
    this.view = viewOf(table);
    this.dirty.clear();
    this.lastUsed = undefined;
  }

  hasDirty(): boolean {
    return this.dirty.size > 0;
  }

  /** Writes the changed entries, runs of neighbours in one write each. True when anything was written. */
  async writeBack(): Promise<boolean> {
    if (this.dirty.size === 0) return false;
    const entries = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    for (let i = 0; i < entries.length; ) {
      let j = i;
      while (j + 1 < entries.length && entries[j + 1] === entries[j]! + 1) j++;
      const from = entries[i]! * 8;
      const to = (entries[j]! + 1) * 8;
      try {
        await this.file.write(this.at + from, this.bytes.subarray(from, to));
      } catch (err) {
        // Unwritten entries stay dirty: the next flush writes them before anything that needs them.
        for (const e of entries.slice(i)) this.dirty.add(e);
        throw err;
      }
      i = j + 1;
    }
    return true;
  }
}

/**
 * Size of a grown refcount table (at least double, and enough for entry
 * `needed`) and the number of new refcount blocks that count it and
 * themselves, placed together at the start of the first range the old table
 * cannot describe: the two depend on each other, so iterate to the fixed point.
 */
export function planTableGrowth(L: Qcow2Layout, oldEntries: number, needed: number): { blocks: number; tableClusters: number } {
  const areaStart = oldEntries * L.refblockEntries;
  let blocks = 1;
  let tableClusters = 1;
  for (let iter = 0; iter < 64; iter++) {
    const areaEnd = areaStart + blocks + tableClusters;
    const entries = Math.max(oldEntries * 2, needed + 1, Math.ceil(areaEnd / L.refblockEntries) + 1);
    const tc = Math.ceil((entries * 8) / L.clusterSize);
    const b = Math.ceil((blocks + tc) / L.refblockEntries);
    if (tc === tableClusters && b === blocks) break;
    tableClusters = tc;
    blocks = b;
  }
  return { blocks, tableClusters };
}
