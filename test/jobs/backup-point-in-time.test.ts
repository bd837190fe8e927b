/**
 * The point-in-time guarantee as a property: whatever the guest writes
 * (data, zeroes; any offset and length, aligned or not, one cluster or
 * many, several at once) interleaved with whatever progress the
 * background copy makes, the finished target equals the source as it was
 * when the job was created. Progress is driven by a hand-advanced virtual
 * clock under a rate limit, so every interleaving is reproducible.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { BackupJob, type BackupListener } from '../../src/jobs/backup.js';
import { VirtualClock } from '../../src/blockdev/clock.js';
import { createImage, openImage } from '../../src/image/open.js';
import { withTempDir } from '../helpers/qemu.js';

const SIZE = 2 << 20;
const KiB = 1024;
const settle = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};
const quiet: BackupListener = { statusChanged: () => undefined, pending: () => undefined, finished: () => undefined, removed: () => undefined, ioError: () => undefined };

type Op = { kind: 'write' | 'zeroes'; offset: number; length: number; byte: number; concurrent: boolean } | { kind: 'step'; slices: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constantFrom('write' as const, 'zeroes' as const),
    offset: fc.integer({ min: 0, max: SIZE - 1 }),
    length: fc.oneof(fc.integer({ min: 1, max: 4 * KiB }), fc.integer({ min: 1, max: 256 * KiB })),
    byte: fc.integer({ min: 1, max: 255 }),
    concurrent: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('step' as const), slices: fc.integer({ min: 1, max: 4 }) }),
);

/**
 * The two layouts: raw to raw in one-cluster tasks, and a qcow2 source with
 * every other cluster unallocated to a qcow2 target in 1 MiB tasks, where a
 * task is several extents (data and zeroes) copied at once.
 */
const LAYOUTS = [
  { name: 'raw, one-cluster tasks', format: 'raw', half: false, maxChunk: 64 * KiB, compress: false },
  { name: 'half-allocated qcow2, 1 MiB tasks of several extents', format: 'qcow2', half: true, maxChunk: 1 << 20, compress: false },
  // Compressed writes take one cluster each, also when a guest write covers many allocated ones.
  { name: 'allocated qcow2 to a compressed target', format: 'qcow2', half: false, maxChunk: 1 << 20, compress: true },
] as const;

/** The source's original bytes and the images: a half-allocated qcow2 source holds data only in even clusters (odd ones read as zeroes). */
async function makeImages(dir: string, run: number, format: 'raw' | 'qcow2', half: boolean): Promise<{ original: Uint8Array; src: string; tgt: string }> {
  const original = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) original[i] = half && (i >> 16) % 2 === 1 ? 0 : (i * 7 + (i >> 9) + run) & 0xff;
  const src = join(dir, `src${run}.${format}`);
  const tgt = join(dir, `tgt${run}.${format}`);
  if (format === 'raw') {
    await writeFile(src, original);
    await writeFile(tgt, new Uint8Array(SIZE));
    return { original, src, tgt };
  }
  await createImage(src, { format: 'qcow2', size: SIZE });
  await createImage(tgt, { format: 'qcow2', size: SIZE });
  const img = await openImage(src);
  const step = half ? 128 * KiB : 64 * KiB;
  for (let off = 0; off < SIZE; off += step) await img.write(off, original.subarray(off, off + 64 * KiB));
  await img.close();
  return { original, src, tgt };
}

async function readImage(path: string): Promise<Buffer> {
  const img = await openImage(path, { readOnly: true });
  try {
    return Buffer.from(await img.read(0, SIZE));
  } finally {
    await img.close();
  }
}

describe.each(LAYOUTS)('backup: point in time (property), $name', ({ format, half, maxChunk, compress }) => {
  it('random guest writes interleaved with job progress never reach the target', async () => {
    await withTempDir(async (dir) => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
          run++;
          const { original, src, tgt } = await makeImages(dir, run, format, half);
          const g = new BlockGraph();
          const source = await openBlockdev(g, { driver: format, 'node-name': 'src', file: { driver: 'file', filename: src } });
          const target = await openBlockdev(g, { driver: format, 'node-name': 'tgt', file: { driver: 'file', filename: tgt } });
          const clock = new VirtualClock();
          // 256 KiB/s: at most one task per 100 ms slice (a task is charged whole), so steps decide the progress.
          const job = new BackupJob('j', quiet, { source, target, sync: 'full', speed: 256 * KiB, clock, maxChunk, compress });
          job.start();
          const inFlight: Promise<void>[] = [];
          for (const o of ops) {
            if (o.kind === 'step') {
              for (let s = 0; s < o.slices; s++) {
                await clock.advance(100_000_000);
                await settle();
              }
              continue;
            }
            const length = Math.min(o.length, SIZE - o.offset);
            const w = o.kind === 'write' ? source.write(o.offset, new Uint8Array(length).fill(o.byte)) : source.writeZeroes(o.offset, length);
            if (o.concurrent) inFlight.push(w);
            else await w;
          }
          await Promise.all(inFlight);
          job.setSpeed(0);
          await clock.advance(1_000_000_000);
          await job.concludedPromise;
          expect(job.error).toBeUndefined();
          await g.closeAll();
          const got = format === 'raw' ? await readFile(tgt) : await readImage(tgt);
          expect(Buffer.compare(got, Buffer.from(original))).toBe(0);
        }),
        { numRuns: Number(process.env.PIT_RUNS ?? 30) },
      );
    });
  }, 120_000);
});
