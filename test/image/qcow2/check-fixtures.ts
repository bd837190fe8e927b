/**
 * Fixtures for the qcow2 check tests: a byte-level editor for damaging
 * images (the tests decide what "damage" means from the format spec, not
 * from the code under test), and a small hand-built image for tests that
 * must run without QEMU.
 */
import { open, readFile, stat, writeFile } from 'node:fs/promises';

export const COPIED = 1n << 63n;
const OFFSET_MASK = 0x00fffffffffffe00n;

/** Reads and patches the tables of a qcow2 file in place. */
export class Poke {
  private constructor(
    readonly path: string,
    readonly clusterBits: number,
    readonly refcountOrder: number,
    readonly l1Offset: number,
    readonly reftableOffset: number,
    readonly snapshotsOffset: number,
  ) {}

  static async open(path: string): Promise<Poke> {
    const h = await readFile(path).then((b) => b.subarray(0, 112));
    const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
    const version = v.getUint32(4);
    return new Poke(
      path,
      v.getUint32(20),
      version >= 3 ? v.getUint32(96) : 4,
      Number(v.getBigUint64(40)),
      Number(v.getBigUint64(48)),
      Number(v.getBigUint64(64)),
    );
  }

  get clusterSize(): number {
    return 2 ** this.clusterBits;
  }

  async bytes(offset: number, length: number): Promise<Uint8Array> {
    const fh = await open(this.path, 'r');
    try {
      const buf = new Uint8Array(length);
      await fh.read(buf, 0, length, offset);
      return buf;
    } finally {
      await fh.close();
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const fh = await open(this.path, 'r+');
    try {
      await fh.write(data, 0, data.length, offset);
    } finally {
      await fh.close();
    }
  }

  async u64(offset: number): Promise<bigint> {
    const b = await this.bytes(offset, 8);
    return new DataView(b.buffer).getBigUint64(0);
  }

  async setU64(offset: number, value: bigint): Promise<void> {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, value));
    await this.write(offset, b);
  }

  async setU32(offset: number, value: number): Promise<void> {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value);
    await this.write(offset, b);
  }

  /** Address of the L1 entry mapping guest offset `g`. */
  l1EntryAt(g: number): number {
    return this.l1Offset + 8 * Math.floor(g / (this.clusterSize * (this.clusterSize / 8)));
  }

  /** Address of the L2 entry mapping guest offset `g` (its L2 table must exist). */
  async l2EntryAt(g: number): Promise<number> {
    const l2 = Number((await this.u64(this.l1EntryAt(g))) & OFFSET_MASK);
    return l2 + 8 * (Math.floor(g / this.clusterSize) % (this.clusterSize / 8));
  }

  /** Host offset of the (standard) cluster mapping guest offset `g`. */
  async host(g: number): Promise<number> {
    return Number((await this.u64(await this.l2EntryAt(g))) & OFFSET_MASK);
  }

  async l2TableOf(g: number): Promise<number> {
    return Number((await this.u64(this.l1EntryAt(g))) & OFFSET_MASK);
  }

  /** Where the refcount of `cluster` lives: byte offset and bit shift (sub-byte widths are LSB first). */
  private async refcountSlot(cluster: number): Promise<{ at: number; shift: number; bits: number }> {
    const bits = 2 ** this.refcountOrder;
    const perBlock = (this.clusterSize * 8) / bits;
    const block = Number((await this.u64(this.reftableOffset + 8 * Math.floor(cluster / perBlock))) & ~0x1ffn);
    const i = cluster % perBlock;
    return { at: block + Math.floor((i * bits) / 8), shift: (i * bits) % 8, bits };
  }

  async refcount(cluster: number): Promise<bigint> {
    const { at, shift, bits } = await this.refcountSlot(cluster);
    const b = await this.bytes(at, Math.max(1, bits / 8));
    if (bits < 8) return BigInt((b[0]! >> shift) & (2 ** bits - 1));
    let v = 0n;
    for (const x of b) v = (v << 8n) | BigInt(x);
    return v;
  }

  async setRefcount(cluster: number, value: bigint): Promise<void> {
    const { at, shift, bits } = await this.refcountSlot(cluster);
    if (bits < 8) {
      const cur = (await this.bytes(at, 1))[0]!;
      const mask = (2 ** bits - 1) << shift;
      await this.write(at, Uint8Array.of((cur & ~mask) | ((Number(value) << shift) & mask)));
      return;
    }
    const out = new Uint8Array(bits / 8);
    let v = value;
    for (let i = out.length - 1; i >= 0; i--) {
      out[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    await this.write(at, out);
  }

  async fileClusters(): Promise<number> {
    return Math.ceil((await stat(this.path)).size / this.clusterSize);
  }
}

export interface HandBuilt {
  clusterBits?: number;
  refcountOrder?: number;
  /** Guest clusters 0..dataClusters-1 are mapped to consecutive host clusters. */
  dataClusters?: number;
  /** Free clusters left at the end of the file (refcount 0). */
  spareClusters?: number;
  virtualSize?: number;
  dirty?: boolean;
}

/**
 * A minimal valid v3 image written byte by byte from the format spec:
 * cluster 0 header, 1 refcount table, 2 refcount block, 3 L1, 4 L2, then
 * the data clusters (filled with their guest cluster number), then spares.
 */
export async function buildImage(path: string, o: HandBuilt = {}): Promise<void> {
  const cb = o.clusterBits ?? 16;
  const cs = 2 ** cb;
  const order = o.refcountOrder ?? 4;
  const n = o.dataClusters ?? 3;
  const spare = o.spareClusters ?? 0;
  const size = o.virtualSize ?? 64 * 2 ** 20;
  const l1Size = Math.ceil(size / (cs * (cs / 8)));
  if (l1Size * 8 > cs) throw new Error('fixture: L1 must fit one cluster');
  const total = 5 + n + spare;
  const buf = new Uint8Array(total * cs);
  const v = new DataView(buf.buffer);
  v.setUint32(0, 0x514649fb);
  v.setUint32(4, 3);
  v.setUint32(20, cb);
  v.setBigUint64(24, BigInt(size));
  v.setUint32(36, l1Size);
  v.setBigUint64(40, BigInt(3 * cs));
  v.setBigUint64(48, BigInt(cs));
  v.setUint32(56, 1);
  v.setBigUint64(72, o.dirty ? 1n : 0n);
  v.setUint32(96, order);
  v.setUint32(100, 112);
  v.setBigUint64(cs, BigInt(2 * cs)); // refcount table entry 0 -> block at cluster 2
  const bits = 2 ** order;
  for (let c = 0; c < 5 + n; c++) {
    const bit = c * bits;
    if (bits < 8) buf[2 * cs + Math.floor(bit / 8)]! |= 1 << (bit % 8);
    else buf[2 * cs + bit / 8 + bits / 8 - 1] = 1;
  }
  v.setBigUint64(3 * cs, COPIED | BigInt(4 * cs));
  for (let g = 0; g < n; g++) {
    v.setBigUint64(4 * cs + 8 * g, COPIED | BigInt((5 + g) * cs));
    buf.fill(g + 1, (5 + g) * cs, (6 + g) * cs);
  }
  await writeFile(path, buf);
}
