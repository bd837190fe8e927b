import fc from 'fast-check';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createImage, openImage } from '../../../src/image/open.js';
import type { BlockImage, Preallocation } from '../../../src/image/types.js';
import { qemu, qemuImg, withTempDir } from '../../helpers/qemu.js';

/**
 * Model test for resizing: random writes, zero writes, discards, resizes
 * up and down (with every preallocation mode) and reopens on a qcow2 image,
 * with and without a longer backing file, against a byte array. Sizes stay
 * whole clusters here, so what a resize exposes is fully defined: past a
 * shrink's new end everything is dropped (reads fall through to the
 * backing file), a grown area reads zeroes where a backing file would
 * otherwise show through, preallocated areas read zeroes. (What the cluster
 * holding an unaligned end keeps is QEMU's business, compared with qemu-img
 * itself in test/interop/img-resize.test.ts.) qemu-img check judges the
 * metadata after every run.
 */
type Op =
  | { op: 'write'; at: number; len: number; seed: number }
  | { op: 'zero'; at: number; len: number; unmap: boolean }
  | { op: 'discard'; at: number; len: number }
  | { op: 'resize'; to: number; prealloc: Preallocation }
  | { op: 'read'; at: number; len: number }
  | { op: 'flush' }
  | { op: 'reopen' };

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (x >>> 24) | 1;
  }
  return b;
}

/** Where a read and the model first disagree, for the failure message. */
function firstDifference(got: Uint8Array, want: Uint8Array, at: number): string {
  const i = got.findIndex((b, k) => b !== want[k]);
  return i < 0 ? 'none' : `offset ${at + i}: read ${got[i]}, model ${want[i]}`;
}

const geometry = fc.record({
  clusterSize: fc.constantFrom(512, 1024, 4096, 65536),
  compat: fc.constantFrom('1.1' as const, '1.1' as const, '0.10' as const),
  refcountBits: fc.constantFrom(16, 16, 1, 64),
  backing: fc.boolean(),
  /** Initial size as a fraction of the largest size. */
  start: fc.integer({ min: 5, max: 60 }).map((p) => p / 100),
});

// Integers scaled, not fc.double: its doubles crowd near zero, so every resize would shrink to nothing.
const fraction = fc.integer({ min: 0, max: 9999 }).map((x) => x / 10000);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('write' as const), at: fraction, len: fc.integer({ min: 1, max: 200_000 }), seed: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('zero' as const), at: fraction, len: fc.integer({ min: 1, max: 200_000 }), unmap: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('discard' as const), at: fraction, len: fc.integer({ min: 1, max: 200_000 }) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('resize' as const),
      to: fc.oneof({ weight: 9, arbitrary: fraction }, { weight: 1, arbitrary: fc.constant(0) }),
      prealloc: fc.constantFrom<Preallocation>('off', 'off', 'off', 'metadata', 'falloc', 'full'),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('read' as const), at: fraction, len: fc.integer({ min: 1, max: 200_000 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'flush' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
);

describe('qcow2 resize against an in-memory model', () => {
  it('reads back what the model says, across random resizes', async () => {
    await fc.assert(
      fc.asyncProperty(geometry, fc.array(op, { minLength: 1, maxLength: 30 }), fc.nat(), async (g, seq, baseSeed) => {
        await withTempDir(async (dir) => {
          const cs = g.clusterSize;
          // Small clusters get room to outgrow the first L1 cluster (2 MiB of guest data at 512 B).
          const maxClusters = cs <= 1024 ? Math.floor((6 << 20) / cs) : 96;
          const max = maxClusters * cs;
          const path = join(dir, 'img.qcow2');
          let size = Math.max(1, Math.floor(g.start * maxClusters)) * cs;
          // What a read of each byte returns, also past the end: there, what it would return after growing with nothing in the way.
          const content = new Uint8Array(max);
          const base = g.backing ? pattern(Math.floor((max * 3) / 4 / 512) * 512, baseSeed) : new Uint8Array(0);
          const unallocated = (from: number, to: number) => {
            content.fill(0, from, to);
            content.set(base.subarray(Math.min(from, base.length), Math.min(to, base.length)), Math.min(from, base.length));
          };
          let backingFile: string | undefined;
          if (g.backing) {
            backingFile = join(dir, 'base.qcow2');
            await createImage(backingFile, { format: 'qcow2', size: base.length, clusterSize: 65536 });
            const b = await openImage(backingFile);
            await b.write(0, base);
            await b.close();
          }
          unallocated(0, max);
          await createImage(path, {
            format: 'qcow2',
            size,
            clusterSize: cs,
            compat: g.compat,
            refcountBits: g.compat === '0.10' ? 16 : g.refcountBits,
            backingFile,
            backingFormat: g.backing ? 'qcow2' : undefined,
          });
          const v3 = g.compat === '1.1';
          let img: BlockImage = await openImage(path);
          const span = (at: number, len: number) => {
            const off = Math.floor(at * size);
            return { off, len: Math.min(len, size - off) };
          };
          try {
            for (const o of seq) {
              switch (o.op) {
                case 'write': {
                  if (size === 0) break;
                  const { off, len } = span(o.at, o.len);
                  const d = pattern(len, o.seed);
                  await img.write(off, d);
                  content.set(d, off);
                  break;
                }
                case 'zero': {
                  if (size === 0) break;
                  const { off, len } = span(o.at, o.len);
                  await img.writeZeroes(off, len, { mayUnmap: o.unmap });
                  content.fill(0, off, off + len);
                  break;
                }
                case 'discard': {
                  if (size === 0) break;
                  const { off, len } = span(o.at, o.len);
                  await img.discard(off, len);
                  // Whole clusters read as zeroes; version 2 with a backing file declines the
                  // discard (QEMU's qcow2_co_pdiscard: no zero flag, the backing data would show).
                  const s = Math.ceil(off / cs) * cs;
                  const e = Math.floor((off + len) / cs) * cs;
                  if (s < e && (v3 || !g.backing)) content.fill(0, s, e);
                  break;
                }
                case 'resize': {
                  const to = Math.floor(o.to * (maxClusters + 1)) * cs;
                  const old = size;
                  if (to < old && o.prealloc !== 'off') {
                    await expect(img.resize(to, { preallocation: o.prealloc })).rejects.toThrow("Preallocation can't be used for shrinking an image");
                    break;
                  }
                  const resizing = img.resize(to, { preallocation: o.prealloc });
                  if (to < old) {
                    await resizing;
                    unallocated(to, max);
                    size = to;
                    break;
                  }
                  // Preallocated clusters are new and hold zeroes.
                  if (o.prealloc !== 'off') content.fill(0, old, to);
                  // A longer backing file must not show through: zero clusters (v3), or no resize (v2).
                  if (to > old && base.length > old && (o.prealloc === 'off' || o.prealloc === 'metadata')) {
                    if (!v3) {
                      await expect(resizing).rejects.toThrow('Failed to zero out new clusters: Operation not supported');
                      break;
                    }
                    content.fill(0, old, to);
                  }
                  await resizing;
                  size = to;
                  break;
                }
                case 'read': {
                  if (size === 0) break;
                  const { off, len } = span(o.at, o.len);
                  expect(firstDifference(await img.read(off, len), content.subarray(off, off + len), off)).toBe('none');
                  break;
                }
                case 'flush':
                  await img.flush();
                  break;
                case 'reopen':
                  await img.close();
                  img = await openImage(path);
                  break;
              }
              expect(img.size()).toBe(size);
            }
            expect(firstDifference(await img.read(0, size), content.subarray(0, size), 0)).toBe('none');
          } finally {
            await img.close();
          }
          if (qemu.available) {
            const check = await qemuImg('check', '-f', 'qcow2', path);
            expect(check.stdout + check.stderr).toContain('No errors were found on the image.');
            expect(check.code).toBe(0);
          }
        });
      }),
      { numRuns: Number(process.env.RESIZE_RUNS ?? 40) },
    );
  }, 300_000);
});
