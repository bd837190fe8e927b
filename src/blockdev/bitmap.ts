/**
 * A bit per chunk of a device (granularity bytes): the shape of QEMU's
 * HBitmap as the block layer uses it (dirty bitmaps, block-copy's copy
 * bitmap). Dense, one bit per chunk; a 1 TiB device at 64 KiB granularity
 * is 2 MiB of memory.
 */
export class ChunkBitmap {
  private readonly words: Uint32Array;
  private setCount = 0;
  readonly chunks: number;

  constructor(
    readonly size: number,
    readonly granularity: number,
  ) {
    this.chunks = Math.ceil(size / granularity);
    this.words = new Uint32Array(Math.ceil(this.chunks / 32));
  }

  get(chunk: number): boolean {
    return (this.words[chunk >>> 5]! & (1 << (chunk & 31))) !== 0;
  }

  set(chunk: number): void {
    if (!this.get(chunk)) {
      this.words[chunk >>> 5]! |= 1 << (chunk & 31);
      this.setCount++;
    }
  }

  clear(chunk: number): void {
    if (this.get(chunk)) {
      this.words[chunk >>> 5]! &= ~(1 << (chunk & 31));
      this.setCount--;
    }
  }

  setAll(): void {
    for (let c = 0; c < this.chunks; c++) this.set(c);
  }

  /** Marks every chunk touched by the byte range [offset, offset+length). */
  setRange(offset: number, length: number): void {
    if (length <= 0) return;
    const last = Math.min(this.chunks - 1, Math.floor((offset + length - 1) / this.granularity));
    for (let c = Math.floor(offset / this.granularity); c <= last; c++) this.set(c);
  }

  /** Dirty chunks. */
  get count(): number {
    return this.setCount;
  }

  /**
   * Dirty bytes as QEMU counts them (hbitmap_count: dirty bits shifted by
   * the granularity): every dirty chunk counts whole, the last one too,
   * even where it reaches past the device's end (a bitmap coarser than
   * its disk counts a whole granularity). Bitmap counts, a backup's
   * length and its progress all come from this.
   */
  get dirtyBytes(): number {
    return this.setCount * this.granularity;
  }

  /** The first set chunk at or after `from`, or -1. */
  nextSet(from: number): number {
    for (let c = Math.max(0, from); c < this.chunks; ) {
      const w = this.words[c >>> 5]! >>> (c & 31);
      if (w === 0) {
        c = (c | 31) + 1;
        continue;
      }
      const i = c + (31 - Math.clz32(w & -w));
      return i < this.chunks ? i : -1;
    }
    return -1;
  }

  /** The same bits for a device of `size` bytes (hbitmap_truncate): chunks past a new end go, new chunks are clean. */
  resized(size: number): ChunkBitmap {
    const out = new ChunkBitmap(size, this.granularity);
    for (let c = this.nextSet(0); c >= 0 && c < out.chunks; c = this.nextSet(c + 1)) out.set(c);
    return out;
  }

  clearAll(): void {
    this.words.fill(0);
    this.setCount = 0;
  }

  /** Clears every chunk wholly inside the byte range (a partly covered chunk stays set, as hbitmap_reset). */
  clearRange(offset: number, length: number): void {
    const first = Math.ceil(offset / this.granularity);
    const end = offset + length >= this.size ? this.chunks : Math.floor((offset + length) / this.granularity);
    for (let c = first; c < end; c++) this.clear(c);
  }

  /** A copy of the same geometry (an undo backup). */
  clone(): ChunkBitmap {
    const c = new ChunkBitmap(this.size, this.granularity);
    c.words.set(this.words);
    c.setCount = this.setCount;
    return c;
  }

  /** Makes this bitmap equal to `other` (same geometry). */
  copyFrom(other: ChunkBitmap): void {
    this.words.set(other.words);
    this.setCount = other.setCount;
  }

  /**
   * OR another bitmap of the same size into this one; with a different
   * granularity every byte range the source has set is marked here, so a
   * coarser target rounds outwards (hbitmap_merge).
   */
  mergeAny(other: ChunkBitmap): void {
    if (other.granularity === this.granularity) return this.merge(other);
    for (let c = other.nextSet(0); c >= 0; c = other.nextSet(c + 1)) {
      const off = c * other.granularity;
      this.setRange(off, Math.min(other.granularity, this.size - off));
    }
  }

  /**
   * The bits as a qcow2 image stores them (hbitmap serialisation): bit j of
   * byte k is chunk 8k+j, padded to whole 64-bit words.
   */
  serialize(): Uint8Array {
    const out = new Uint8Array(Math.ceil(this.chunks / 64) * 8);
    const v = new DataView(out.buffer);
    this.words.forEach((w, i) => v.setUint32(i * 4, w, true));
    return out;
  }

  /** Bits a qcow2 image stored (serialize's layout); bits past the last chunk are ignored. */
  static deserialize(size: number, granularity: number, bytes: Uint8Array): ChunkBitmap {
    const b = new ChunkBitmap(size, granularity);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < b.words.length && i * 4 + 4 <= bytes.length; i++) {
      let w = v.getUint32(i * 4, true);
      const live = b.chunks - i * 32;
      if (live < 32) w &= (1 << live) - 1;
      b.words[i] = w >>> 0;
      for (let x = w; x !== 0; x &= x - 1) b.setCount++;
    }
    return b;
  }

  /** OR another bitmap of the same geometry into this one. */
  merge(other: ChunkBitmap): void {
    for (let c = other.nextSet(0); c >= 0; c = other.nextSet(c + 1)) this.set(c);
  }
}
