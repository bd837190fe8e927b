import { BlockError } from './errors.js';

/** Refuses requests that do not lie inside a device of `size` bytes (QEMU answers EIO). */
export function checkRequest(what: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new BlockError('OUT_OF_RANGE', `${what}: invalid request offset=${offset} length=${length}`, { errno: 'EINVAL' });
  }
  if (offset + length > size) {
    throw new BlockError('OUT_OF_RANGE', `${what}: request [${offset}, ${offset + length}) is past the end of the device (${size} bytes)`, {
      errno: 'EIO',
    });
  }
}

/** True when every byte of buf is zero. */
export function isZero(buf: Uint8Array, start = 0, end = buf.length): boolean {
  let i = start;
  // Compare 4 bytes at a time where aligned (32-bit words stay small integers; 64-bit ones would be BigInts).
  if (((buf.byteOffset + i) & 3) === 0) {
    const words = Math.floor((end - i) / 4);
    if (words > 0) {
      const view = new Uint32Array(buf.buffer, buf.byteOffset + i, words);
      for (let w = 0; w < words; w++) if (view[w] !== 0) return false;
      i += words * 4;
    }
  }
  for (; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Bytes of zeroes to write, shared: never mutated. */
export const ZERO_CHUNK = new Uint8Array(1 << 20);
