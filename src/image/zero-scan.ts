import { isZero } from './request.js';

/** Granularity of the scan: Node cannot ask the host for holes (no SEEK_DATA), so the data is looked at. */
const SCAN_BLOCK = 4096;
const SCAN_CHUNK = 1 << 20;

/**
 * From `offset`, the longest run (at most `length` bytes, in whole 4 KiB
 * blocks but for the last) that is all zeroes or has data in every block:
 * what a host's SEEK_DATA/SEEK_HOLE would tell, except that written zeroes
 * count as a hole too (they read the same).
 */
export async function zeroRun(read: (buf: Uint8Array, offset: number) => Promise<void>, offset: number, length: number): Promise<{ length: number; zero: boolean }> {
  let zero: boolean | undefined;
  let run = 0;
  const buf = new Uint8Array(Math.min(SCAN_CHUNK, length));
  while (run < length) {
    const n = Math.min(SCAN_CHUNK, length - run);
    const part = buf.subarray(0, n);
    await read(part, offset + run);
    for (let i = 0; i < n; i += SCAN_BLOCK) {
      const end = Math.min(i + SCAN_BLOCK, n);
      const z = isZero(part, i, end);
      if (zero === undefined) zero = z;
      else if (z !== zero) return { length: run, zero };
      run += end - i;
    }
  }
  return { length: run, zero: zero ?? true };
}
