import { nodeCrypto } from '../lazy-builtins.js';

/** One XTS data unit: a 512-byte sector, 32 AES blocks, each with its own tweak. */
const SECTOR = 512;
const BLOCKS = SECTOR / 16;

/**
 * AES-XTS (IEEE 1619) over many sectors at once, as QEMU's cipher encrypts
 * sector by sector with the sector number as each unit's tweak. Node's
 * aes-xts takes one data unit per cipher object, which for a megabyte is
 * two thousand objects; here the tweaks of every sector are made with one
 * AES-ECB pass under the tweak key (then doubled in GF(2^128) block by
 * block), and the data goes through one AES-ECB pass under the data key
 * between two XORs with them.
 */
export class XtsCipher {
  private readonly dataKey: Buffer;
  private readonly tweakKey: Buffer;
  private readonly ecb: string;

  constructor(key: Uint8Array) {
    const half = key.length / 2;
    this.dataKey = Buffer.from(key.subarray(0, half));
    this.tweakKey = Buffer.from(key.subarray(half));
    this.ecb = `aes-${half * 8}-ecb`;
  }

  /** `data` (whole sectors) encrypted into a new buffer; `ivs` holds each sector's 16-byte IV. */
  encrypt(ivs: Buffer, data: Uint8Array): Uint8Array {
    const tweaks = this.tweaks(ivs, data.length);
    const mixed = xor(data, tweaks);
    const c = nodeCrypto().createCipheriv(this.ecb, this.dataKey, null).setAutoPadding(false);
    const out = c.update(mixed);
    xorInto(out, tweaks);
    return out;
  }

  /** Decrypts whole sectors of `data` in place. */
  decryptInPlace(ivs: Buffer, data: Uint8Array): void {
    const tweaks = this.tweaks(ivs, data.length);
    const mixed = xor(data, tweaks);
    const d = nodeCrypto().createDecipheriv(this.ecb, this.dataKey, null).setAutoPadding(false);
    const plain = d.update(mixed);
    xorInto(plain, tweaks);
    data.set(plain);
  }

  /** Every block's tweak: E(tweak key, IV) for the sector's first, each next one the last times α. */
  private tweaks(ivs: Buffer, length: number): Uint32Array {
    const first = nodeCrypto().createCipheriv(this.ecb, this.tweakKey, null).setAutoPadding(false).update(ivs);
    const t0 = new Uint32Array(first.buffer.slice(first.byteOffset, first.byteOffset + first.length));
    const out = new Uint32Array(length / 4);
    for (let s = 0, at = 0; s < length / SECTOR; s++) {
      // Little-endian words of the 128-bit tweak (the machine's order, which Uint32Array uses, is little-endian here).
      let a = t0[s * 4]!;
      let b = t0[s * 4 + 1]!;
      let c = t0[s * 4 + 2]!;
      let d = t0[s * 4 + 3]!;
      for (let j = 0; j < BLOCKS; j++, at += 4) {
        out[at] = a;
        out[at + 1] = b;
        out[at + 2] = c;
        out[at + 3] = d;
        const carry = d >>> 31;
        d = ((d << 1) | (c >>> 31)) >>> 0;
        c = ((c << 1) | (b >>> 31)) >>> 0;
        b = ((b << 1) | (a >>> 31)) >>> 0;
        a = ((a << 1) ^ (carry * 0x87)) >>> 0;
      }
    }
    return out;
  }
}

/** `data` XOR `mask` as a new buffer (any alignment of `data`). */
function xor(data: Uint8Array, mask: Uint32Array): Buffer {
  const out = Buffer.allocUnsafe(data.length);
  out.set(data);
  xorInto(out, mask);
  return out;
}

function xorInto(buf: Buffer, mask: Uint32Array): void {
  // A Buffer from allocUnsafe may sit at any offset of its pool: a word view needs one aligned to 4.
  if (buf.byteOffset % 4 === 0) {
    const w = new Uint32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    for (let i = 0; i < w.length; i++) w[i] = w[i]! ^ mask[i]!;
    return;
  }
  const m = new Uint8Array(mask.buffer, mask.byteOffset, mask.byteLength);
  for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! ^ m[i]!;
}
