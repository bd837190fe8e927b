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
import { VirtualClock } from '../../src/jobs/clock.js';
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

describe('backup: point in time (property)', () => {
  it('random guest writes interleaved with job progress never reach the target', async () => {
    await withTempDir(async (dir) => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
          run++;
          const original = new Uint8Array(SIZE);
          for (let i = 0; i < SIZE; i++) original[i] = (i * 7 + (i >> 9) + run) & 0xff;
          const src = join(dir, `src${run}.raw`);
          const tgt = join(dir, `tgt${run}.raw`);
          await writeFile(src, original);
          await writeFile(tgt, new Uint8Array(SIZE));
          const g = new BlockGraph();
          const source = await openBlockdev(g, { driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: src } });
          const target = await openBlockdev(g, { driver: 'raw', 'node-name': 'tgt', file: { driver: 'file', filename: tgt } });
          const clock = new VirtualClock();
          // 256 KiB/s: one 64 KiB-cluster task of up to 1 MiB per 100 ms slice at most, so steps decide the progress.
          const job = new BackupJob('j', quiet, { source, target, sync: 'full', speed: 256 * KiB, clock, maxChunk: 64 * KiB });
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
          const got = await readFile(tgt);
          expect(Buffer.compare(got, Buffer.from(original))).toBe(0);
        }),
        { numRuns: Number(process.env.PIT_RUNS ?? 30) },
      );
    });
  }, 120_000);
});
