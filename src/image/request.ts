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
  // Compare 8 bytes at a time where aligned: this runs on every block-status scan.
  if (((buf.byteOffset + i) & 7) === 0) {
    const words = Math.floor((end - i) / 8);
    if (words > 0) {
      const view = new BigUint64Array(buf.buffer, buf.byteOffset + i, words);
      for (let w = 0; w < words; w++) if (view[w] !== 0n) return false;
      i += words * 8;
    }
  }
  for (; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Bytes of zeroes to write, shared: never mutated. */
export const ZERO_CHUNK = new Uint8Array(1 << 20);
