/**
 * The qcow2 consistency check at the API level: hand-built images (no QEMU
 * needed) for every refcount width, damage applied byte by byte from the
 * format spec, repairs re-checked, hostile bytes never escaping as anything
 * but a BlockError; and, with QEMU's tools, the counters of checkQcow2
 * against `qemu-img check --output=json` on the very same files.
 */
import { copyFile, readFile, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockError } from '../../../src/image/errors.js';
import { HostFile } from '../../../src/image/file.js';
import { getRefcountIn, RefcountArray } from '../../../src/image/qcow2/check-imrt.js';
import { type CheckResult, checkQcow2, repairDirtyImage } from '../../../src/image/qcow2/check.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../../helpers/qemu.js';
import { buildImage, COPIED, Poke } from './check-fixtures.js';

const texts = (r: CheckResult) => r.messages.map((m) => m.text);

describe('refcount entry encoding', () => {
  it('packs sub-byte widths least significant bit first and wider ones big-endian', () => {
    const cases: Array<[order: number, values: number[], bytes: number[]]> = [
      [0, [1, 0, 1, 1, 0, 0, 0, 1], [0b10001101]],
      [1, [3, 0, 2, 1], [0b01100011]],
      [2, [0xa, 0x5], [0x5a]],
      [3, [7, 255], [7, 255]],
      [4, [0x1234], [0x12, 0x34]],
      [5, [0x01020304], [1, 2, 3, 4]],
      [6, [5], [0, 0, 0, 0, 0, 0, 0, 5]],
    ];
    for (const [order, values, bytes] of cases) {
      const a = new RefcountArray(order, 9, values.length);
      values.forEach((v, i) => a.set(i, v));
      const block = a.encodeBlock(0, 512);
      expect([...block.subarray(0, bytes.length)], `order ${order}`).toEqual(bytes);
      values.forEach((v, i) => expect(Number(getRefcountIn(block, i, order))).toBe(v));
    }
  });
});

describe('checkQcow2 on hand-built images', () => {
  let dir: string;
  let done: () => void;
  beforeAll(async () => {
    await new Promise<void>((ready) => {
      void withTempDir(async (d) => {
        dir = d;
        ready();
        await new Promise<void>((r) => (done = r));
      });
    });
  });
  afterAll(() => done());

  it.each([0, 1, 2, 3, 4, 5, 6])('a consistent image with refcount order %i has no findings', async (order) => {
    const p = join(dir, `clean${order}.qcow2`);
    await buildImage(p, { refcountOrder: order, dataClusters: 3 });
    const r = await checkQcow2(p);
    expect(r.messages).toEqual([]);
    expect(r).toMatchObject({ corruptions: 0, leaks: 0, checkErrors: 0, allocatedClusters: 3, totalClusters: 1024 });
    expect(r.imageEndOffset).toBe(8 * 65536);
  });

  it.each([0, 2, 4, 6])('a leaked cluster (order %i) is found and repaired with -r leaks', async (order) => {
    const p = join(dir, `leak${order}.qcow2`);
    await buildImage(p, { refcountOrder: order, dataClusters: 2, spareClusters: 2 });
    const poke = await Poke.open(p);
    await poke.setRefcount(8, 1n);
    const r = await checkQcow2(p);
    expect(texts(r)).toEqual(['Leaked cluster 8 refcount=1 reference=0']);
    expect(r).toMatchObject({ leaks: 1, corruptions: 0 });
    const fixed = await checkQcow2(p, { repair: 'leaks' });
    expect(fixed).toMatchObject({ leaks: 0, leaksFixed: 1, corruptions: 0, repaired: true });
    expect(await poke.refcount(8)).toBe(0n);
    expect((await checkQcow2(p)).messages).toEqual([]);
  });

  it('a zero refcount under a data cluster needs a rebuild, which -r all does', async () => {
    const p = join(dir, 'zero.qcow2');
    await buildImage(p, { dataClusters: 3 });
    const before = await readFile(p);
    const poke = await Poke.open(p);
    await poke.setRefcount(6, 0n);
    const r = await checkQcow2(p);
    expect(texts(r)).toEqual([
      'ERROR cluster 6 refcount=0 reference=1',
      'ERROR OFLAG_COPIED data cluster: l2_entry=8000000000060000 refcount=0',
    ]);
    expect(r.corruptions).toBe(2);
    const leaksOnly = await checkQcow2(p, { repair: 'leaks' });
    expect(leaksOnly.failure?.errno).toBe('EIO');
    expect(texts(leaksOnly)).toContain('ERROR need to rebuild refcount structures');
    const fixed = await checkQcow2(p, { repair: 'all' });
    expect(texts(fixed)).toContain('Rebuilding refcount structure');
    expect(fixed).toMatchObject({ corruptions: 0, leaks: 0, checkErrors: 0 });
    expect(fixed.corruptionsFixed).toBeGreaterThan(0);
    expect((await checkQcow2(p)).messages).toEqual([]);
    // Guest data untouched: the data clusters are still where the L2 table says.
    const after = await readFile(p);
    for (let c = 5; c < 8; c++) expect(after.subarray(c * 65536, (c + 1) * 65536)).toEqual(before.subarray(c * 65536, (c + 1) * 65536));
  });

  it('a cleared COPIED flag is a corruption that -r all sets again', async () => {
    const p = join(dir, 'copied.qcow2');
    await buildImage(p, { dataClusters: 2 });
    const poke = await Poke.open(p);
    const at = await poke.l2EntryAt(65536);
    await poke.setU64(at, (await poke.u64(at)) & ~COPIED);
    expect(texts(await checkQcow2(p))).toEqual(['ERROR OFLAG_COPIED data cluster: l2_entry=60000 refcount=1']);
    const fixed = await checkQcow2(p, { repair: 'all' });
    expect(fixed).toMatchObject({ corruptionsFixed: 1, corruptions: 0 });
    expect(await poke.u64(at)).toBe(COPIED | 0x60000n);
  });

  it('reports unaligned, reserved and past-the-end entries without reading out of bounds', async () => {
    const p = join(dir, 'entries.qcow2');
    await buildImage(p, { dataClusters: 3 });
    const poke = await Poke.open(p);
    await poke.setU64(await poke.l2EntryAt(0), COPIED | 0x50200n);
    await poke.setU64(await poke.l2EntryAt(65536), COPIED | 0x1000000000n);
    await poke.setU64(await poke.l2EntryAt(2 * 65536), COPIED | 0x70000n | 0x0100000000000000n);
    const t = texts(await checkQcow2(p));
    expect(t).toContain('ERROR offset=50200: Data cluster is not properly aligned; L2 entry corrupted.');
    expect(t).toContain('ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x1000000000 size 0x10000');
    expect(t).toContain('ERROR found l2 entry with reserved bits set: 8100000000070000');
  });

  it('sizes its refcount array by the file, not by a petabyte virtual size', async () => {
    const p = join(dir, 'huge.qcow2');
    await buildImage(p, { clusterBits: 21, dataClusters: 1, virtualSize: 2 ** 50 });
    const r = await checkQcow2(p);
    expect(r).toMatchObject({ corruptions: 0, leaks: 0, totalClusters: 2 ** 29, allocatedClusters: 1 });
  });

  it('a refcount block far outside the file is a finding, not an allocation', async () => {
    const p = join(dir, 'rtout.qcow2');
    await buildImage(p, { dataClusters: 1 });
    const poke = await Poke.open(p);
    await poke.setU64(65536 + 8, 1n << 55n);
    const r = await checkQcow2(p);
    expect(texts(r)).toEqual(['ERROR refcount block 1 is outside image']);
    expect(r.corruptions).toBe(1);
  });

  it('repairs a dirty image the way QEMU does on a read-write open, and clears the dirty bit', async () => {
    const p = join(dir, 'dirty.qcow2');
    await buildImage(p, { dataClusters: 2, spareClusters: 1, dirty: true });
    const poke = await Poke.open(p);
    await poke.setRefcount(7, 1n);
    await poke.setRefcount(5, 0n);
    const file = await HostFile.open(p);
    try {
      const pass = await repairDirtyImage(file, p);
      expect(pass.checkErrors).toBe(0);
    } finally {
      await file.close();
    }
    expect(await poke.u64(72)).toBe(0n);
    expect((await checkQcow2(p)).messages).toEqual([]);
  });

  it('random damage to the tables never ends in anything but a result or a BlockError', async () => {
    const base = join(dir, 'fuzz-base.qcow2');
    await buildImage(base, { clusterBits: 9, refcountOrder: 4, dataClusters: 6, spareClusters: 2, virtualSize: 1 << 20 });
    const victim = join(dir, 'fuzz.qcow2');
    const size = (await stat(base)).size;
    const mutation = fc.record({
      pokes: fc.array(fc.record({ at: fc.integer({ min: 0, max: 5 * 512 - 1 }), value: fc.integer({ min: 0, max: 255 }) }), {
        minLength: 1,
        maxLength: 12,
      }),
      cut: fc.option(fc.integer({ min: 0, max: size }), { nil: undefined }),
      repair: fc.constantFrom(undefined, 'leaks' as const, 'all' as const),
    });
    await fc.assert(
      fc.asyncProperty(mutation, async ({ pokes, cut, repair }) => {
        await copyFile(base, victim);
        const poke = await Poke.open(victim);
        for (const { at, value } of pokes) await poke.write(at, Uint8Array.of(value));
        if (cut !== undefined) await truncate(victim, cut);
        for (const mode of [repair, undefined]) {
          try {
            const r = await checkQcow2(victim, { repair: mode });
            expect(r.corruptions).toBeGreaterThanOrEqual(0);
          } catch (err) {
            if (!(err instanceof BlockError)) throw err;
          }
        }
      }),
      { numRuns: 250 },
    );
  }, 120_000);
});

/** qemu-img check --output=json on `path`, as our CheckResult's counters. */
async function oracle(path: string): Promise<Record<string, number>> {
  const r = await qemuImg('check', '--output=json', path);
  const j = JSON.parse(r.stdout) as Record<string, number>;
  return {
    corruptions: j['corruptions'] ?? 0,
    leaks: j['leaks'] ?? 0,
    checkErrors: j['check-errors'] ?? 0,
    imageEndOffset: j['image-end-offset'] ?? 0,
    totalClusters: j['total-clusters'] ?? 0,
    allocatedClusters: j['allocated-clusters'] ?? 0,
    fragmentedClusters: j['fragmented-clusters'] ?? 0,
    compressedClusters: j['compressed-clusters'] ?? 0,
  };
}

function counters(r: CheckResult): Record<string, number> {
  const { corruptions, leaks, checkErrors, imageEndOffset, totalClusters, allocatedClusters, fragmentedClusters, compressedClusters } = r;
  return { corruptions, leaks, checkErrors, imageEndOffset, totalClusters, allocatedClusters, fragmentedClusters, compressedClusters };
}

describe.skipIf(!qemu.available)('checkQcow2 against qemu-img check on QEMU-made images', () => {
  let dir: string;
  let done: () => void;
  beforeAll(async () => {
    await new Promise<void>((ready) => {
      void withTempDir(async (d) => {
        dir = d;
        ready();
        await new Promise<void>((r) => (done = r));
      });
    });
  });
  afterAll(() => done());

  const must = async (p: Promise<{ code: number; stderr: string }>) => {
    const r = await p;
    if (r.code !== 0) throw new Error(r.stderr);
  };

  async function make(name: string, createOpts: string[], writes: string[]): Promise<string> {
    const p = join(dir, name);
    await must(qemuImg('create', '-q', '-f', 'qcow2', ...createOpts, p, '64M'));
    if (writes.length) await must(qemuIo(...writes.flatMap((w) => ['-c', w]), p));
    return p;
  }

  async function sameAsQemu(p: string): Promise<CheckResult> {
    const r = await checkQcow2(p);
    expect(counters(r)).toEqual(await oracle(p));
    return r;
  }

  it('compressed clusters count every host cluster their bytes touch', async () => {
    const raw = join(dir, 'src.raw');
    await must(qemuImg('create', '-q', '-f', 'raw', raw, '4M'));
    await must(qemuIo('-f', 'raw', '-c', 'write -P 7 0 1M', '-c', 'write -P 3 2M 300k', raw));
    const p = join(dir, 'comp.qcow2');
    await must(qemuImg('convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4k', raw, p));
    const clean = await sameAsQemu(p);
    expect(clean.compressedClusters).toBeGreaterThan(0);
    // Drop the refcount of a host cluster holding compressed data: its references show up as missing.
    const poke = await Poke.open(p);
    const e = await poke.u64(await poke.l2EntryAt(0));
    const host = Number(e & ((1n << 58n) - 1n)) >> 12;
    await poke.setRefcount(host, 0n);
    const r = await sameAsQemu(p);
    expect(r.corruptions).toBeGreaterThan(0);
  });

  it.each([
    ['512-byte clusters', ['-o', 'cluster_size=512']],
    ['2 MiB clusters', ['-o', 'cluster_size=2M']],
    ['1-bit refcounts', ['-o', 'refcount_bits=1']],
    ['64-bit refcounts', ['-o', 'refcount_bits=64']],
    ['version 2', ['-o', 'compat=0.10']],
  ])('%s: same counters as qemu-img, clean and with a leak', async (_name, opts) => {
    const p = await make(`g${opts.join('')}.qcow2`.replace(/[=,]/g, '_'), opts, ['write -P 1 0 64k', 'write -P 2 5M 192k', 'write -z 9M 64k']);
    await sameAsQemu(p);
    const poke = await Poke.open(p);
    const c = (await poke.host(5 * 2 ** 20)) / poke.clusterSize;
    await poke.setRefcount(c, poke.refcountOrder === 0 ? 0n : 2n);
    const r = await sameAsQemu(p);
    expect(r.corruptions + r.leaks).toBeGreaterThan(0);
  });

  it('internal snapshots: shared clusters, snapshot L1 tables and the snapshot table are counted', async () => {
    const p = await make('snap.qcow2', [], ['write -P 1 0 128k', 'write -P 2 3M 64k']);
    await must(qemuImg('snapshot', '-c', 's1', p));
    await must(qemuIo('-c', 'write -P 3 0 64k', '-c', 'write -P 4 40M 64k', p));
    await must(qemuImg('snapshot', '-c', 's2', p));
    await sameAsQemu(p);
    const poke = await Poke.open(p);
    await poke.setRefcount((await poke.host(3 * 2 ** 20)) / poke.clusterSize, 1n);
    expect((await sameAsQemu(p)).corruptions).toBeGreaterThan(0);
  });

  it('dirty bitmaps: directory, bitmap tables and bitmap data clusters are counted', async () => {
    const p = await make('bm.qcow2', [], ['write -P 1 0 64k']);
    await must(qemuImg('bitmap', '--add', p, 'b1'));
    await must(qemuImg('bitmap', '--add', '-g', '128k', p, 'b2'));
    await must(qemuIo('-c', 'write -P 4 5M 1M', p));
    const before = await sameAsQemu(p);
    // Without the bitmaps extension the same image would leak the bitmap clusters.
    const poke = await Poke.open(p);
    await poke.setU64(88, 0n);
    const stale = await sameAsQemu(p);
    expect(stale.leaks).toBeGreaterThan(before.leaks);
  });
});
