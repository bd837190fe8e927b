import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createImage, openImage } from '../../../src/image/open.js';
import { Qcow2Image } from '../../../src/image/qcow2/image.js';
import type { BlockImage, WritePiece } from '../../../src/image/types.js';
import { qemu, qemuImg, withTempDir } from '../../helpers/qemu.js';

/**
 * Model test: random operations on a qcow2 image and on a plain byte array
 * must read back the same, across reopens, for many geometries, with and
 * without a backing file. qemu-img check then judges the metadata.
 */
type Op =
  | { op: 'write'; off: number; len: number; seed: number }
  | { op: 'zero'; off: number; len: number; unmap: boolean }
  | { op: 'discard'; off: number; len: number }
  | { op: 'compressed'; cluster: number; seed: number }
  | { op: 'pieces'; off: number; parts: { len: number; zero: boolean; unmap: boolean; seed: number }[] }
  | { op: 'read'; off: number; len: number }
  | { op: 'flush' }
  | { op: 'reopen' };

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    // Runs of repeated bytes so compressed writes really compress.
    b[i] = (x >>> 24) & (i % 7 === 0 ? 0xff : 0x0f);
  }
  return b;
}

const geometry: fc.Arbitrary<Geometry> = fc.record({
  clusterSize: fc.constantFrom(512, 1024, 4096, 65536),
  clusters: fc.integer({ min: 1, max: 96 }),
  tail: fc.constantFrom(0, 512, 1536),
  compat: fc.constantFrom('1.1' as const, '1.1' as const, '0.10' as const),
  refcountBits: fc.constantFrom(16, 16, 1, 8, 64),
  backing: fc.constantFrom('none', 'raw', 'qcow2'),
  extendedL2: fc.constant(false),
});

/** Extended L2 entries: 32 subclusters per cluster, version 3 and clusters of 16 KiB or more only. */
const extendedGeometry: fc.Arbitrary<Geometry> = fc.record({
  clusterSize: fc.constantFrom(16384, 65536),
  clusters: fc.integer({ min: 1, max: 40 }),
  tail: fc.constantFrom(0, 512, 1536, 4608),
  compat: fc.constant('1.1' as const),
  refcountBits: fc.constantFrom(16, 16, 1, 64),
  backing: fc.constantFrom('none', 'raw', 'qcow2'),
  extendedL2: fc.constant(true),
});

interface Geometry {
  clusterSize: number;
  clusters: number;
  tail: number;
  compat: '0.10' | '1.1';
  refcountBits: number;
  backing: 'none' | 'raw' | 'qcow2';
  extendedL2: boolean;
}

function ops(size: number, clusterSize: number): fc.Arbitrary<Op[]> {
  // Offsets and lengths often on 512-byte boundaries, so subclusters of every kind show up beside each other.
  const offset = fc.oneof(fc.integer({ min: 0, max: size - 1 }), fc.integer({ min: 0, max: Math.floor((size - 1) / 512) }).map((n) => n * 512));
  const range = offset.chain((off) =>
    fc.record({ off: fc.constant(off), len: fc.oneof(fc.integer({ min: 1, max: Math.min(size - off, clusterSize * 5) }), fc.integer({ min: 1, max: Math.max(1, Math.floor(Math.min(size - off, clusterSize * 3) / 512)) }).map((n) => Math.min(n * 512, size - off))) }),
  );
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.tuple(range, fc.nat()).map(([r, seed]) => ({ op: 'write' as const, ...r, seed })) },
    { weight: 2, arbitrary: fc.tuple(range, fc.boolean()).map(([r, unmap]) => ({ op: 'zero' as const, ...r, unmap })) },
    { weight: 2, arbitrary: range.map((r) => ({ op: 'discard' as const, ...r })) },
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: Math.floor((size - 1) / clusterSize) }), fc.nat()).map(([cluster, seed]) => ({ op: 'compressed' as const, cluster, seed })) },
    { weight: 3, arbitrary: range.map((r) => ({ op: 'read' as const, ...r })) },
    // Mostly whole clusters (the batched path), sometimes not (the one-by-one path); cut to the image in the run.
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('pieces' as const),
        off: fc.oneof(fc.integer({ min: 0, max: Math.floor((size - 1) / clusterSize) }).map((c) => c * clusterSize), fc.integer({ min: 0, max: size - 1 })),
        parts: fc.array(
          fc.record({ len: fc.oneof(fc.integer({ min: 1, max: 3 }).map((n) => n * clusterSize), fc.integer({ min: 1, max: clusterSize * 2 })), zero: fc.boolean(), unmap: fc.boolean(), seed: fc.nat() }),
          { minLength: 1, maxLength: 6 },
        ),
      }),
    },
    { weight: 1, arbitrary: fc.constant({ op: 'flush' as const }) },
    { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
  );
  return fc.array(op, { minLength: 1, maxLength: 40 });
}

describe('qcow2 against an in-memory model', () => {
  it('reads back what was written, for random operation sequences', () => modelRuns(geometry, Number(process.env.MODEL_RUNS ?? 60)), 300_000);
  it('reads back what was written with extended L2 entries (subclusters)', () => modelRuns(extendedGeometry, Number(process.env.MODEL_RUNS ?? 40)), 300_000);
});

async function modelRuns(geometry: fc.Arbitrary<Geometry>, numRuns: number): Promise<void> {
    await fc.assert(
      fc.asyncProperty(
        geometry.chain((g) => {
          const size = g.clusters * g.clusterSize + g.tail;
          return fc.tuple(fc.constant({ ...g, size }), ops(size, g.clusterSize), fc.nat());
        }),
        async ([g, seq, baseSeed]) => {
          await withTempDir(async (dir) => {
            const path = join(dir, 'img.qcow2');
            const model = new Uint8Array(g.size);
            let backingFile: string | undefined;
            if (g.backing !== 'none') {
              backingFile = join(dir, `base.${g.backing}`);
              // The backing file may be shorter than the overlay: the rest reads as zeroes.
              const baseSize = Math.max(512, Math.floor((g.size * 3) / 4 / 512) * 512);
              await createImage(backingFile, { format: g.backing as 'raw' | 'qcow2', size: baseSize, clusterSize: 4096 });
              const base = await openImage(backingFile);
              const content = pattern(baseSize, baseSeed);
              await base.write(0, content);
              await base.close();
              model.set(content);
            }
            await createImage(path, {
              format: 'qcow2',
              size: g.size,
              clusterSize: g.clusterSize,
              compat: g.compat,
              refcountBits: g.compat === '0.10' ? 16 : g.refcountBits,
              backingFile,
              backingFormat: g.backing === 'none' ? undefined : (g.backing as 'raw' | 'qcow2'),
              extendedL2: g.extendedL2,
            });
            let img: BlockImage = await openImage(path);
            const cs = g.clusterSize;
            const wholeClusters = (off: number, len: number, f: (s: number, e: number) => void) => {
              const s = Math.ceil(off / cs) * cs;
              const end = off + len === g.size ? Math.ceil(g.size / cs) * cs : Math.floor((off + len) / cs) * cs;
              if (s < end) f(s, Math.min(end, g.size));
            };
            try {
              for (const o of seq) {
                switch (o.op) {
                  case 'write': {
                    const d = pattern(o.len, o.seed);
                    await img.write(o.off, d);
                    model.set(d, o.off);
                    break;
                  }
                  case 'zero':
                    await img.writeZeroes(o.off, o.len, { mayUnmap: o.unmap });
                    model.fill(0, o.off, o.off + o.len);
                    break;
                  case 'discard':
                    await img.discard(o.off, o.len);
                    // Whole clusters read as zeroes after a discard; version 2 with a backing file
                    // declines it (QEMU's qcow2_co_pdiscard: no zero flag, the backing data would show).
                    wholeClusters(o.off, o.len, (s, e) => {
                      if (g.compat === '1.1' || !backingFile) model.fill(0, s, e);
                    });
                    break;
                  case 'compressed': {
                    const off = o.cluster * cs;
                    const d = pattern(Math.min(cs, g.size - off), o.seed);
                    await (img as Qcow2Image).writeCompressed(off, d);
                    model.set(d, off);
                    break;
                  }
                  case 'pieces': {
                    const pieces: WritePiece[] = [];
                    let at = o.off;
                    for (const p of o.parts) {
                      const len = Math.min(p.len, g.size - at);
                      if (len <= 0) break;
                      const data = p.zero ? undefined : pattern(len, p.seed);
                      pieces.push({ offset: at, length: len, data, mayUnmap: p.unmap });
                      if (data) model.set(data, at);
                      else model.fill(0, at, at + len);
                      at += len;
                    }
                    await (img as Qcow2Image).writePieces(pieces);
                    break;
                  }
                  case 'read': {
                    expect(Buffer.from(await img.read(o.off, o.len)).equals(Buffer.from(model.subarray(o.off, o.off + o.len)))).toBe(true);
                    // The status of the range in one call is the extent-by-extent walk, and zero extents hold zeroes.
                    const runs = await (img as Qcow2Image).blockStatusRuns(o.off, o.len);
                    const walk = [];
                    for (let pos = o.off; pos < o.off + o.len; ) {
                      const e = await img.blockStatus(pos, o.off + o.len - pos);
                      walk.push(e);
                      pos += e.length;
                    }
                    expect(runs).toEqual(walk);
                    for (const e of runs) if (e.zero) expect(model.subarray(e.offset, e.offset + e.length).every((b) => b === 0)).toBe(true);
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
              }
              const all = await img.read(0, g.size);
              expect(Buffer.from(all).equals(Buffer.from(model))).toBe(true);
            } finally {
              await img.close();
            }
            if (qemu.available) {
              const check = await qemuImg('check', '-f', 'qcow2', path);
              expect(check.stdout + check.stderr).toContain('No errors were found on the image.');
              expect(check.code).toBe(0);
            }
          });
        },
      ),
      { numRuns },
    );
}
