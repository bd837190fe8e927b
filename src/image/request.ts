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

/**
 * True when every byte of buf[start, end) is zero. Data seldom starts with
 * zeroes, so its first bytes settle most calls in JS; the rest is compared
 * with zeroes by memcmp (Buffer.compare), several times faster over a
 * hole's megabytes than a loop here.
 */
export function isZero(buf: Uint8Array, start = 0, end = buf.length): boolean {
  for (let i = start, stop = Math.min(end, start + 16); i < stop; i++) if (buf[i] !== 0) return false;
  for (let at = start; at < end; at += ZERO_CMP.length) {
    const n = Math.min(ZERO_CMP.length, end - at);
    if (Buffer.compare(buf.subarray(at, at + n), n === ZERO_CMP.length ? ZERO_CMP : ZERO_CMP.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/** What isZero compares with: small enough to stay in the CPU's caches while a hole streams past. */
const ZERO_CMP = new Uint8Array(64 * 1024);

/** Bytes of zeroes to write, shared: never mutated. */
export const ZERO_CHUNK = new Uint8Array(1 << 20);
