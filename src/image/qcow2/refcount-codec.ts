import { viewOf } from './layout.js';

/**
 * Entries of a refcount block, `bits` wide (1 to 64, a power of two):
 * big-endian for whole bytes, and for widths under 8 bits packed from the
 * least significant bit of each byte (qcow2.txt). 64-bit counts above 2^53
 * read as Number.MAX_SAFE_INTEGER: no image reaches them, and a count that
 * large only needs to stay "not 1" and "not 0".
 */
export function getRefcount(block: Uint8Array, i: number, bits: number): number {
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

export function setRefcount(block: Uint8Array, i: number, bits: number, value: number): void {
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
