import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IoMerger } from '../../src/image/io-merge.js';
import { withTempDir } from '../helpers/qemu.js';

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed + (i >> 8)) & 0xff;
  return out;
}

/** Byte equality without vitest's element-by-element deep compare (slow on MiBs). */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  expect(Buffer.compare(actual, expected)).toBe(0);
}

async function withFile<T>(content: Uint8Array, flags: string, fn: (m: IoMerger, path: string) => Promise<T>): Promise<T> {
  return withTempDir(async (dir) => {
    const path = join(dir, 'f');
    writeFileSync(path, content);
    const fd = openSync(path, flags);
    try {
      return await fn(new IoMerger(fd), path);
    } finally {
      closeSync(fd);
    }
  });
}

describe('IoMerger', () => {
  it('reads adjacent requests of one turn with one system call, each buffer getting its own bytes', async () => {
    const data = pattern(1 << 20, 3);
    await withFile(data, 'r', async (m) => {
      const bufs = Array.from({ length: 16 }, () => new Uint8Array(65536));
      // Issued out of order: merging sorts by position.
      await Promise.all(bufs.map((_, i) => m.read(bufs[15 - i]!, (15 - i) * 65536)));
      bufs.forEach((b, i) => expectBytes(b, data.subarray(i * 65536, (i + 1) * 65536)));
      expect(m.stats.mergedCalls).toBe(1);
      // Requests of different turns are not held back for each other.
      for (let i = 0; i < 3; i++) await m.read(bufs[i]!, i * 65536);
      expect(m.stats.mergedCalls).toBe(1);
    });
  });

  it('keeps gaps, overlaps and merges over 1 MiB apart', async () => {
    const data = pattern(4 << 20, 9);
    await withFile(data, 'r', async (m) => {
      const reqs = [
        [0, 4096],
        [8192, 4096], // a gap before it
        [8192 + 2048, 4096], // overlaps the previous
        [1 << 20, 1 << 20],
        [2 << 20, 4096], // adjacent, but the group would pass 1 MiB
      ] as const;
      const bufs = reqs.map(([, n]) => new Uint8Array(n));
      await Promise.all(reqs.map(([off], i) => m.read(bufs[i]!, off)));
      reqs.forEach(([off, n], i) => expectBytes(bufs[i], data.subarray(off, off + n)));
      expect(m.stats.mergedCalls).toBe(0);
    });
  });

  it('fills what lies past end of file with zeroes, in a merged group too', async () => {
    const data = pattern(100_000, 5);
    await withFile(data, 'r', async (m) => {
      const a = new Uint8Array(65536).fill(0xee);
      const b = new Uint8Array(65536).fill(0xee);
      const c = new Uint8Array(65536).fill(0xee);
      await Promise.all([m.read(a, 0), m.read(b, 65536), m.read(c, 131072)]);
      expect(m.stats.mergedCalls).toBe(1);
      expectBytes(a, data.subarray(0, 65536));
      expectBytes(b.subarray(0, 100_000 - 65536), data.subarray(65536));
      expect(b.subarray(100_000 - 65536).every((x) => x === 0)).toBe(true);
      expect(c.every((x) => x === 0)).toBe(true);
    });
  });

  it('writes adjacent requests (several buffers each) with one system call', async () => {
    await withFile(new Uint8Array(0), 'r+', async (m, path) => {
      const parts = [pattern(1000, 1), pattern(3000, 2), pattern(5000, 3)];
      await Promise.all([m.write([parts[1]!, parts[2]!], 1000), m.write([parts[0]!], 0), m.write([new Uint8Array(0)], 50)]);
      expect(m.stats.mergedCalls).toBe(1);
      expect(new Uint8Array(readFileSync(path))).toEqual(Uint8Array.from([...parts[0]!, ...parts[1]!, ...parts[2]!]));
    });
  });

  it('gives every request of a failed group its own error', async () => {
    await withFile(pattern(8192, 1), 'r', async (m) => {
      // A descriptor opened read-only: each write fails alone, with EBADF.
      const results = await Promise.allSettled([m.write([pattern(4096, 1)], 0), m.write([pattern(4096, 2)], 4096)]);
      expect(m.stats.mergedCalls).toBe(1);
      for (const r of results) expect(r.status === 'rejected' && (r.reason as NodeJS.ErrnoException).code).toBe('EBADF');
    });
  });

  it('leaves the file as the same writes one by one would (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ slot: fc.integer({ min: 0, max: 63 }), len: fc.integer({ min: 1, max: 4 }), seed: fc.integer({ min: 0, max: 255 }) }), { maxLength: 30 }),
        async (writes) => {
          // Non-overlapping writes of one turn (overlapping ones were never ordered): keep the first of each slot.
          const taken = new Set<number>();
          const chosen = writes.filter((w) => {
            const slots = Array.from({ length: w.len }, (_, k) => w.slot + k).filter((s) => s < 64);
            if (slots.some((s) => taken.has(s))) return false;
            slots.forEach((s) => taken.add(s));
            return true;
          });
          const expected = pattern(64 * 512, 77);
          await withFile(expected.slice(), 'r+', async (m, path) => {
            await Promise.all(
              chosen.map((w) => {
                const len = Math.min(w.len, 64 - w.slot) * 512;
                const bytes = pattern(len, w.seed);
                expected.set(bytes, w.slot * 512);
                return m.write([bytes.subarray(0, 100), bytes.subarray(100)], w.slot * 512);
              }),
            );
            expectBytes(new Uint8Array(readFileSync(path)), expected);
          });
        },
      ),
      { numRuns: 50 },
    );
  });
});
