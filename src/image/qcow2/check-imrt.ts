/**
 * The in-memory refcount table of a check (QEMU's "IMRT"): one computed
 * reference count per host cluster, sized by the file's length in clusters
 * and grown only by the few clusters a reference may overhang the end of
 * the file or a rebuild appends. Values saturate at the image's refcount
 * maximum (an overflow is a finding, not a wrap-around).
 */
type Store = Uint8Array | Uint16Array | Uint32Array | Float64Array;

/** Past this the array is refused (ENOMEM) rather than exhausting the process. */
export const IMRT_MAX_BYTES = 1 << 30;

export class ImrtError extends Error {
  constructor(readonly errno: 'ENOMEM' | 'EFBIG') {
    super(errno);
  }
}

export class RefcountArray {
  private store: Store;
  /** Logical number of clusters (QEMU's nb_clusters). */
  size: number;
  /** Largest value an entry can hold: 2^refcount_bits - 1 (64-bit: never reached in practice). */
  readonly max: number;
  /** Entries per refcount block: slices of this array are written as refcount blocks. */
  private readonly blockEntries: number;

  constructor(
    private readonly refcountOrder: number,
    clusterBits: number,
    size: number,
  ) {
    const bits = 2 ** refcountOrder;
    this.max = bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
    this.blockEntries = 2 ** (clusterBits + 3 - refcountOrder);
    this.size = 0;
    this.store = this.alloc(0);
    this.resize(size);
  }

  private bytesPerEntry(): number {
    return this.refcountOrder <= 3 ? 1 : this.refcountOrder === 4 ? 2 : this.refcountOrder === 5 ? 4 : 8;
  }

  private alloc(entries: number): Store {
    if (entries * this.bytesPerEntry() > IMRT_MAX_BYTES) throw new ImrtError('ENOMEM');
    try {
      switch (this.refcountOrder) {
        case 0: case 1: case 2: case 3: return new Uint8Array(entries);
        case 4: return new Uint16Array(entries);
        case 5: return new Uint32Array(entries);
        default: return new Float64Array(entries);
      }
    } catch {
      throw new ImrtError('ENOMEM');
    }
  }

  /** Grows to `size` entries (new ones zero); capacity is kept in whole refcount blocks. */
  resize(size: number): void {
    if (size > 0x7fffffff) throw new ImrtError('EFBIG');
    if (size > this.store.length) {
      const cap = Math.ceil(size / this.blockEntries) * this.blockEntries;
      // Geometric growth for the few-clusters-at-a-time appends of a rebuild, within the cap.
      let want = Math.max(cap, Math.min(this.store.length * 2, cap + (1 << 20)));
      if (want * this.bytesPerEntry() > IMRT_MAX_BYTES) want = cap;
      const next = this.alloc(want);
      next.set(this.store);
      this.store = next;
    }
    this.size = Math.max(this.size, size);
  }

  get(i: number): number {
    return i < this.store.length ? this.store[i]! : 0;
  }

  set(i: number, v: number): void {
    if (i >= this.store.length) this.resize(i + 1);
    this.store[i] = v;
  }

  clear(): void {
    this.store.fill(0);
  }

  /** Refcount block `index` in the on-disk encoding (sub-byte widths LSB first, wider ones big-endian). */
  encodeBlock(index: number, clusterSize: number): Uint8Array {
    const out = new Uint8Array(clusterSize);
    const view = new DataView(out.buffer);
    const first = index * this.blockEntries;
    const bits = 2 ** this.refcountOrder;
    for (let j = 0; j < this.blockEntries; j++) {
      const v = this.get(first + j);
      if (v === 0) continue;
      switch (bits) {
        case 1: case 2: case 4: {
          const perByte = 8 / bits;
          out[Math.floor(j / perByte)]! |= v << ((j % perByte) * bits);
          break;
        }
        case 8: out[j] = v; break;
        case 16: view.setUint16(j * 2, v); break;
        case 32: view.setUint32(j * 4, v); break;
        default: view.setBigUint64(j * 8, BigInt(v));
      }
    }
    return out;
  }
}

/** Reads entry `i` of a refcount block buffer of the given width. */
export function getRefcountIn(block: Uint8Array, i: number, order: number): bigint | number {
  const bits = 2 ** order;
  switch (bits) {
    case 1: case 2: case 4: {
      const perByte = 8 / bits;
      return (block[Math.floor(i / perByte)]! >> ((i % perByte) * bits)) & (2 ** bits - 1);
    }
    case 8: return block[i]!;
    case 16: return (block[i * 2]! << 8) | block[i * 2 + 1]!;
    case 32: return new DataView(block.buffer, block.byteOffset).getUint32(i * 4);
    default: return new DataView(block.buffer, block.byteOffset).getBigUint64(i * 8);
  }
}

/** Writes entry `i` of a refcount block buffer of the given width. */
export function setRefcountIn(block: Uint8Array, i: number, order: number, value: bigint): void {
  const bits = 2 ** order;
  const view = new DataView(block.buffer, block.byteOffset);
  switch (bits) {
    case 1: case 2: case 4: {
      const perByte = 8 / bits;
      const shift = (i % perByte) * bits;
      const b = Math.floor(i / perByte);
      block[b] = (block[b]! & ~((2 ** bits - 1) << shift)) | (Number(value) << shift);
      break;
    }
    case 8: block[i] = Number(value); break;
    case 16: view.setUint16(i * 2, Number(value)); break;
    case 32: view.setUint32(i * 4, Number(value)); break;
    default: view.setBigUint64(i * 8, value);
  }
}
