/**
 * `blockemu img check` against `qemu-img check` 7.2 on the same files:
 * images made by qemu-img/qemu-io (512 B to 2 MiB clusters, refcount widths
 * 1 and 64, v2, compressed clusters, internal snapshots, dirty bitmaps),
 * damaged byte by byte, then checked by both tools in every mode. stdout,
 * stderr (program name normalised, see img-oracle.ts) and exit code must be
 * identical; after a repair the files must be byte for byte what QEMU's
 * repair produces (bitmap images excepted: QEMU rewrites persistent bitmaps
 * when it closes an image it opened read-write), qemu-img must judge them
 * the same, and guest data must be unchanged.
 */
import { copyFile, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { printfFixed2 } from '../../src/cli/img-check.js';
import { qemu } from '../helpers/qemu.js';
import { COPIED, Poke } from '../image/qcow2/check-fixtures.js';
import { blockemuImg, expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

type Damage = (p: Poke) => Promise<void>;

const MASK = 0x00fffffffffffe00n;

/** A cluster inside the file that nothing uses (the images are made with one). */
async function freeCluster(p: Poke): Promise<number> {
  const n = await p.fileClusters();
  for (let c = n - 1; c > 0; c--) if ((await p.refcount(c)) === 0n) return c;
  throw new Error('fixture has no free cluster');
}

async function setEntry(p: Poke, at: number, f: (e: bigint) => bigint): Promise<void> {
  await p.setU64(at, f(await p.u64(at)));
}

/** Damage that only touches refcounts or COPIED flags: a repair must leave guest data as it was. */
const refcountDamage: Record<string, Damage> = {
  'leak-free-cluster': async (p) => p.setRefcount(await freeCluster(p), 1n),
  'refcount-too-high': async (p) => {
    const c = (await p.host(0)) / p.clusterSize;
    await p.setRefcount(c, (await p.refcount(c)) + 1n);
  },
  'refcount-zero-data': async (p) => p.setRefcount((await p.host(0)) / p.clusterSize, 0n),
  'refcount-zero-l2': async (p) => p.setRefcount((await p.l2TableOf(0)) / p.clusterSize, 0n),
  'copied-cleared-l2': async (p) => setEntry(p, await p.l2EntryAt(0), (e) => e & ~COPIED),
  'copied-cleared-l1': async (p) => setEntry(p, p.l1EntryAt(0), (e) => e & ~COPIED),
  'refblock-outside-image': async (p) => p.setU64(p.reftableOffset + 8, BigInt(((await p.fileClusters()) + 3) * p.clusterSize)),
};

/** Damage to the mapping itself: findings must match, data may legitimately change. */
const mappingDamage: Record<string, Damage> = {
  // QEMU's repair leaves reserved bits in a refcount table entry as they are (so do we).
  'reftable-reserved-bits': async (p) => setEntry(p, p.reftableOffset, (e) => e | 0x10n),
  'l2-entry-unaligned': async (p) => setEntry(p, await p.l2EntryAt(0), (e) => e + BigInt(Math.max(512, p.clusterSize / 2))),
  'l2-entry-past-eof': async (p) => p.setU64(await p.l2EntryAt(0), COPIED | BigInt(((await p.fileClusters()) + 16) * p.clusterSize)),
  'l2-reserved-bits': async (p) => setEntry(p, await p.l2EntryAt(0), (e) => e | 0x0100000000000002n),
  'l1-reserved-bits': async (p) => setEntry(p, p.l1EntryAt(0), (e) => e | 0x0200000000000004n),
  'l1-entry-past-eof': async (p) => p.setU64(p.l1EntryAt(0), COPIED | BigInt(((await p.fileClusters()) + 10) * p.clusterSize)),
  'two-entries-one-cluster': async (p) => p.setU64(await p.l2EntryAt(p.clusterSize), await p.u64(await p.l2EntryAt(0))),
  'refblock-used-as-data': async (p) => p.setU64(await p.l2EntryAt(3 * p.clusterSize), COPIED | ((await p.u64(p.reftableOffset)) & MASK)),
  'file-truncated': async (p) => truncate(p.path, (await stat(p.path)).size - p.clusterSize),
};

const MODES: string[][] = [[], ['--output=json'], ['-r', 'leaks'], ['-r', 'all'], ['-r', 'all', '--output=json']];

describe.skipIf(!qemu.available)('blockemu img check (vs qemu-img check)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  const bases: Record<string, string> = {};

  beforeAll(async () => {
    s = await scratch();
    const standard = ['write -P 1 0 64k', 'write -z 1M 64k', 'write -P 2 63M 4k', 'write -P 3 2M 192k', 'write -P 4 4M 64k', 'discard 2M 64k'];
    const make = async (name: string, opts: string[], writes = standard) => {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', ...opts, `${name}.qcow2`, '64M'], s.dir);
      await must('qemu-io', [...writes.flatMap((w) => ['-c', w]), `${name}.qcow2`], s.dir);
      bases[name] = `${name}.qcow2`;
    };
    await make('c64k', []);
    await make('c512', ['-o', 'cluster_size=512']);
    await make('c2m', ['-o', 'cluster_size=2M'], ['write -P 1 0 64k', 'write -P 2 10M 3M', 'write -P 3 20M 2M', 'write -P 4 40M 2M', 'discard 20M 2M']);
    await make('rc1', ['-o', 'refcount_bits=1']);
    await make('rc64', ['-o', 'refcount_bits=64']);
    await make('v2', ['-o', 'compat=0.10']);
    // Compressed clusters (several per host cluster with 4 KiB clusters).
    await must('qemu-img', ['create', '-q', '-f', 'raw', 'src.raw', '8M'], s.dir);
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 1M', '-c', 'write -P 9 3M 100k', 'src.raw'], s.dir);
    await must('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4k', 'src.raw', 'comp.qcow2'], s.dir);
    bases['comp'] = 'comp.qcow2';
    // Internal snapshots sharing clusters with the active state.
    await make('snap', []);
    await must('qemu-img', ['snapshot', '-c', 's1', 'snap.qcow2'], s.dir);
    await must('qemu-io', ['-c', 'write -P 8 0 64k', '-c', 'write -P 8 40M 64k', 'snap.qcow2'], s.dir);
    await must('qemu-img', ['snapshot', '-c', 's2', 'snap.qcow2'], s.dir);
    // Persistent dirty bitmaps with data clusters.
    await make('bm', []);
    await must('qemu-img', ['bitmap', '--add', 'bm.qcow2', 'b1'], s.dir);
    await must('qemu-img', ['bitmap', '--add', '-g', '128k', 'bm.qcow2', 'b2'], s.dir);
    await must('qemu-io', ['-c', 'write -P 4 5M 1M', '-c', 'write -P 4 30M 64k', 'bm.qcow2'], s.dir);
  }, 60_000);
  afterAll(() => s.done());

  /** Damages a copy of a base image; returns its name (the undamaged copy is `orig-<name>`). */
  async function damaged(base: string, name: string, damage: Damage): Promise<string> {
    const file = `${base}-${name}.qcow2`;
    await copyFile(join(s.dir, bases[base]!), join(s.dir, file));
    await copyFile(join(s.dir, bases[base]!), join(s.dir, `orig-${file}`));
    await damage(await Poke.open(join(s.dir, file)));
    return file;
  }

  /** Both tools on their own copy of `file`, with the same relative name; returns the two copies. */
  async function both(file: string, mode: string[], opts: { sameBytes?: boolean } = {}): Promise<{ b: string; q: string }> {
    const b = join(s.b, file);
    const q = join(s.q, file);
    await copyFile(join(s.dir, file), b);
    await copyFile(join(s.dir, file), q);
    await expectSame(['check', ...mode, file], s);
    if (mode.includes('-r')) {
      if (opts.sameBytes !== false) expect(firstDifference(await readFile(b), await readFile(q)), `${file} after check ${mode.join(' ')}`).toBeUndefined();
      const [jb, jq] = await Promise.all([qemuImgIn(['check', '--output=json', b]), qemuImgIn(['check', '--output=json', q])]);
      expect(jb.code).toBe(jq.code);
    }
    return { b, q };
  }

  // Every damage on the default layout; on the other layouts (cluster sizes,
  // refcount widths, v2) the damages whose findings and repairs depend on
  // the layout. Each case runs both tools several times, so the full cross
  // product would take most of the suite's time budget.
  const layoutSensitive = ['refcount-too-high', 'refcount-zero-l2', 'leak-free-cluster', 'l2-entry-past-eof'];
  const matrix = [
    ...Object.keys({ ...refcountDamage, ...mappingDamage }).map((d) => ['c64k', d] as const),
    ...['c512', 'c2m', 'rc1', 'rc64', 'v2'].flatMap((base) => layoutSensitive.map((d) => [base, d] as const)),
  ];

  // The other layouts change findings and repairs, not how they are printed: JSON (every field) and a full repair there.
  const LAYOUT_MODES: string[][] = [['--output=json'], ['-r', 'all']];

  it.each(matrix)('%s with %s: same findings, output and exit code as qemu-img', async (base, name) => {
    const damage = refcountDamage[name] ?? mappingDamage[name]!;
    if (base === 'c512' && name === 'l2-entry-unaligned') return; // 512-byte clusters: every offset field is aligned
    const file = await damaged(base, name, damage);
    for (const mode of base === 'c64k' ? MODES : LAYOUT_MODES) {
      const { b } = await both(file, mode);
      if (mode.join(' ') === '-r all' && name in refcountDamage) {
        // Repaired: qemu-img finds it clean and the guest sees the same data as before the damage.
        const after = await qemuImgIn(['check', b]);
        expect(after.stdout).toMatch(/^No errors were found on the image\./);
        expect((await qemuImgIn(['compare', join(s.dir, `orig-${file}`), b])).stdout).toBe('Images are identical.\n');
      }
    }
  }, 60_000);

  const special: Array<[base: string, name: string, damage: Damage, modes: string[][], sameBytes: boolean]> = [
    ['comp', 'copied-on-compressed', async (p) => setEntry(p, await p.l2EntryAt(0), (e) => e | COPIED), MODES, true],
    ['comp', 'compressed-host-refcount-zero', async (p) => p.setRefcount(Number((await p.u64(await p.l2EntryAt(0))) & ((1n << 58n) - 1n)) >> 12, 0n), MODES, true],
    ['comp', 'compressed-host-refcount-high', async (p) => p.setRefcount(Number((await p.u64(await p.l2EntryAt(8192))) & ((1n << 58n) - 1n)) >> 12, 9n), MODES, true],
    ['comp', 'compressed-past-eof', async (p) => p.setU64(await p.l2EntryAt(0), (1n << 62n) | (5n << 58n) | 0x7654321n), MODES, true],
    ['snap', 'shared-cluster-refcount-1', async (p) => p.setRefcount((await p.host(0x100000 * 4)) / p.clusterSize, 1n), MODES, true],
    ['snap', 'refcount-zero', async (p) => p.setRefcount((await p.host(0)) / p.clusterSize, 0n), MODES, true],
    ['snap', 'snapshot-l1-unaligned', async (p) => setEntry(p, p.snapshotsOffset, (e) => e + 0x200n), MODES, true],
    ['snap', 'snapshot-entry-incomplete', async (p) => p.setU32(p.snapshotsOffset + 36, 8), MODES, true],
    ['snap', 'snapshot-table-unaligned', async (p) => p.setU64(64, BigInt(p.snapshotsOffset + 8)), MODES, true],
    ['bm', 'directory-refcount-high', async (p) => p.setRefcount(Number(await bitmapDirectory(p)) / p.clusterSize, 2n), MODES, false],
    ['bm', 'bitmap-table-refcount-zero', async (p) => p.setRefcount(Number(await p.u64(Number(await bitmapDirectory(p)))) / p.clusterSize, 0n), [[], ['--output=json'], ['-r', 'all']], false],
    ['bm', 'autoclear-bit-cleared', async (p) => p.setU64(88, 0n), [[], ['--output=json']], false],
    ['bm', 'directory-broken', async (p) => p.setU32((await bitmapsExtension(p)) , 3), [[], ['-r', 'all']], false],
  ];

  it.each(special.map(([b, n, d, m, sb]) => ({ b, n, d, m, sb, toString: () => `${b}/${n}` })))('$b with $n: same as qemu-img', async ({ b, n, d, m, sb }) => {
    const file = await damaged(b, n, d);
    for (const mode of m) await both(file, mode, { sameBytes: sb });
  }, 60_000);

  it.each(['c64k', 'c512', 'c2m', 'rc1', 'rc64', 'v2', 'comp', 'snap', 'bm'])('clean image %s: same summary and statistics', async (base) => {
    const file = bases[base]!;
    for (const mode of [[], ['--output=json'], ['-q'], ['-r', 'leaks']]) await both(file, mode, { sameBytes: !file.startsWith('bm') });
  }, 60_000);

  it('a dirty image is consistent for check; a repairing check clears the bit', async () => {
    const file = await damaged('c64k', 'dirty', async (p) => p.setU64(72, 1n));
    await both(file, []);
    const { b } = await both(file, ['-r', 'leaks']);
    expect((await Poke.open(b).then((p) => p.u64(72)))).toBe(0n);
  });

  it('percentages are printf-rounded (1/800 = 0.125 prints as 0.12)', async () => {
    await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'pct.qcow2', `${800 * 64}k`], s.dir);
    await must('qemu-io', ['-c', 'write 0 64k', 'pct.qcow2'], s.dir);
    const { b } = await both('pct.qcow2', []);
    expect((await blockemuImg(['check', b])).stdout).toContain('1/800 = 0.12% allocated');
    expect(printfFixed2(0.125)).toBe('0.12');
    expect(printfFixed2(0.375)).toBe('0.38');
    expect(printfFixed2(66.66666666666667)).toBe('66.67');
    expect(printfFixed2(100)).toBe('100.00');
  });

  it.each([
    [['raw.img']],
    [['-f', 'raw', 'raw.img']],
    [['-r', 'leaks', 'raw.img']],
    [['-f', 'raw', '-r', 'all', 'raw.img']],
    [['-f', 'qcow2', 'raw.img']],
    [['missing.qcow2']],
    [['-f', 'bogus', 'clean.qcow2']],
    [['-r', 'some', 'clean.qcow2']],
    [[]],
    [['clean.qcow2', 'clean.qcow2']],
    [['--output=xml', 'clean.qcow2']],
    [['-x', 'clean.qcow2']],
    [['-q', '--output=json', 'clean.qcow2']],
    [['-U', 'clean.qcow2']],
    [['.']],
    [['notqcow.qcow2']],
    [['-f', 'qcow2', 'truncated.qcow2']],
  ])('arguments %j: same output and exit code', async (args) => {
    for (const d of [s.b, s.q]) {
      await writeFile(join(d, 'raw.img'), new Uint8Array(1 << 20));
      await copyFile(join(s.dir, bases['c64k']!), join(d, 'clean.qcow2'));
      await writeFile(join(d, 'notqcow.qcow2'), Uint8Array.from('QFI\xfb\0\0\0\x09', (c) => c.charCodeAt(0)));
      await writeFile(join(d, 'truncated.qcow2'), (await readFile(join(s.dir, bases['c64k']!))).subarray(0, 50));
    }
    await expectSame(['check', ...args], s);
  });
});

/**
 * Where two files first differ, or undefined when they are identical. (A
 * deep-equality diff of two multi-megabyte buffers would exhaust the heap.)
 */
function firstDifference(a: Uint8Array, b: Uint8Array): string | undefined {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return `byte 0x${i.toString(16)} (cluster-relative 0x${(i % 512).toString(16)} of 512): 0x${a[i]!.toString(16)} vs 0x${b[i]!.toString(16)}`;
  }
  return a.length === b.length ? undefined : `lengths differ: ${a.length} vs ${b.length}`;
}

async function bitmapsExtension(p: Poke): Promise<number> {
  const head = await p.bytes(0, p.clusterSize);
  const v = new DataView(head.buffer);
  for (let off = v.getUint32(100); off + 8 <= head.length; ) {
    const type = v.getUint32(off);
    const len = v.getUint32(off + 4);
    if (type === 0x23852875) return off + 8;
    if (type === 0) break;
    off += 8 + Math.ceil(len / 8) * 8;
  }
  throw new Error('no bitmaps extension');
}

async function bitmapDirectory(p: Poke): Promise<bigint> {
  return p.u64((await bitmapsExtension(p)) + 16);
}
