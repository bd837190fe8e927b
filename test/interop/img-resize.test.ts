/**
 * `blockemu img resize` against `qemu-img resize` 7.2. Each case builds the
 * same image with QEMU's tools in two directories, runs the same command
 * lines there through blockemu and through qemu-img, and expects the same
 * stdout, stderr (program name aside, see img-oracle.ts) and exit codes.
 * Then the two results must be the same image: `qemu-img compare` finds
 * them identical, their virtual sizes (and bitmaps) agree, and blockemu's
 * passes `qemu-img check`. Failed commands are held to the same: whatever
 * a failure left behind must match too.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bitmapView, withDaemon } from '../helpers/bitmap-daemon.js';
import { qemu } from '../helpers/qemu.js';
import { expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

interface Fixture {
  fmt: 'raw' | 'qcow2';
  /** qemu-img create options before the file name (-f is added). */
  opts?: string[];
  size: string;
  /** qemu-io commands run on the new image (data to keep or to lose). */
  io?: string[];
  /** qemu-img commands run on it after that (snapshots, bitmaps); '@' stands for the file name. */
  prep?: string[][];
}

const file = (fx: Fixture) => `img.${fx.fmt}`;
const qcow2 = (cluster: string, size: string, more: Partial<Fixture> = {}, opts: string[] = []): Fixture => ({
  fmt: 'qcow2',
  opts: ['-o', `cluster_size=${cluster}`, ...opts],
  size,
  ...more,
});
const v2 = ['-o', 'compat=0.10'];
const onBase = ['-b', '../base.qcow2', '-F', 'qcow2'];

describe.skipIf(!qemu.available)('blockemu img resize (vs qemu-img resize)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    // A backing file longer than the images put on it, full of data that must not show through a grown overlay.
    await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '8M'], s.dir);
    await must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x77 0 8M', 'base.qcow2'], s.dir);
  });
  afterAll(() => s.done());

  async function build(fx: Fixture): Promise<void> {
    for (const d of [s.b, s.q]) {
      for (const f of await readdir(d)) await rm(join(d, f));
      await must('qemu-img', ['create', '-q', '-f', fx.fmt, ...(fx.opts ?? []), file(fx), fx.size], d);
      if (fx.io?.length) await must('qemu-io', ['-f', fx.fmt, ...fx.io.flatMap((c) => ['-c', c]), file(fx)], d);
      for (const p of fx.prep ?? []) await must('qemu-img', p.map((a) => (a === '@' ? file(fx) : a)), d);
    }
  }

  /** The same command lines, one after the other, through both tools; then the two images must be one. */
  async function resizeBoth(fx: Fixture, ...commands: string[][]): Promise<void> {
    await build(fx);
    for (const args of commands) await expectSame(['resize', ...args], s);
    const img = file(fx);
    const cmp = await qemuImgIn(['compare', '-f', fx.fmt, '-F', fx.fmt, join(s.b, img), join(s.q, img)]);
    expect(cmp.stdout + cmp.stderr).toBe('Images are identical.\n');
    const info = async (d: string) => JSON.parse((await qemuImgIn(['info', '-f', fx.fmt, '--output=json', img], d)).stdout) as Record<string, unknown>;
    const [ib, iq] = [await info(s.b), await info(s.q)];
    expect(ib['virtual-size']).toBe(iq['virtual-size']);
    expect(ib['format-specific']).toEqual(iq['format-specific']);
    if (fx.fmt === 'qcow2') {
      const check = await qemuImgIn(['check', img], s.b);
      expect({ stdout: check.stdout.split('\n')[0], stderr: check.stderr, code: check.code }).toEqual({ stdout: 'No errors were found on the image.', stderr: '', code: 0 });
    }
  }

  describe('raw', () => {
    const raw: Fixture = { fmt: 'raw', size: '1M', io: ['write -P 0x11 0 1M'] };
    it.each([
      [['-f', 'raw', 'img.raw', '2M']],
      [['-f', 'raw', 'img.raw', '+1M']],
      [['-f', 'raw', 'img.raw', '+1']],
      [['-f', 'raw', 'img.raw', '+1537']],
      [['-f', 'raw', 'img.raw', '1M']],
      [['-f', 'raw', 'img.raw', '-512k']],
      [['--shrink', '-f', 'raw', 'img.raw', '-512k']],
      [['--shrink', '-f', 'raw', 'img.raw', '1000']],
      [['img.raw', '+1M']],
      [['img.raw', '-1k']],
      [['-q', '-f', 'raw', 'img.raw', '3M']],
      [['--preallocation=falloc', '-f', 'raw', 'img.raw', '+1M']],
      [['--preallocation=full', '-f', 'raw', 'img.raw', '+100000']],
      [['--preallocation=metadata', '-f', 'raw', 'img.raw', '+1M']],
      [['--preallocation=off', '-f', 'raw', 'img.raw', '+1M']],
      [['--preallocation=full', '--shrink', '-f', 'raw', 'img.raw', '-1k']],
      [['-f', 'qcow2', 'img.raw', '+1M']],
    ])('%j', (args) => resizeBoth(raw, args));

    it('counts a size that is not a whole number of sectors as qemu-img does (rounded up)', () =>
      resizeBoth({ fmt: 'raw', size: '1000', io: ['write -P 0x22 0 1000'] }, ['-f', 'raw', 'img.raw', '+1'], ['-f', 'raw', 'img.raw', '+1'], ['--shrink', '-f', 'raw', 'img.raw', '-1']));
  });

  describe('qcow2: growing', () => {
    it.each([
      // The L1 table outgrows its cluster: 512 B clusters map 2 MiB per L1 cluster, 4 KiB ones 1 GiB, 64 KiB ones 4 TiB.
      ['512 B clusters past one L1 cluster', qcow2('512', '1M', { io: ['write -P 1 0 1M'] }), ['img.qcow2', '64M']],
      ['512 B clusters, version 2', qcow2('512', '1M', { io: ['write -P 1 0 64k'] }, v2), ['img.qcow2', '+63M']],
      ['512 B clusters, 64-bit refcounts, an L1 table longer than a refcount block range', qcow2('512', '1M', { io: ['write -P 1 0 256k'] }, ['-o', 'refcount_bits=64']), ['img.qcow2', '1G']],
      ['4 KiB clusters past one L1 cluster', qcow2('4k', '3M', { io: ['write -P 2 1M 2M'] }), ['img.qcow2', '3G']],
      ['64 KiB clusters past one L1 cluster', qcow2('64k', '1G', { io: ['write -P 3 1020M 4M'] }), ['img.qcow2', '5T']],
      ['2 MiB clusters', qcow2('2M', '5M', { io: ['write -P 4 0 5M'] }), ['img.qcow2', '+1T']],
      ['1-bit refcounts', qcow2('4k', '1M', { io: ['write -P 5 0 1M'] }, ['-o', 'refcount_bits=1']), ['img.qcow2', '+16M']],
      ['within the L1 table it has', qcow2('64k', '1M', { io: ['write -P 6 0 1M'] }), ['img.qcow2', '100M']],
      ['from an end inside a cluster', qcow2('64k', '100k', { io: ['write -P 7 0 100k'] }), ['img.qcow2', '+1M']],
      ['by nothing', qcow2('64k', '1M'), ['img.qcow2', '+0']],
      ['a size of no whole sectors', qcow2('64k', '1M'), ['img.qcow2', '+1000']],
      ['quietly', qcow2('64k', '1M'), ['-q', 'img.qcow2', '2M']],
      ['with options after the file name', qcow2('64k', '1M'), ['img.qcow2', '-f', 'qcow2', '--preallocation', 'off', '2M']],
      ['compressed clusters', qcow2('4k', '1M', { io: ['write -c -P 8 0 64k'] }), ['img.qcow2', '+1M']],
    ])('%s', (_name, fx, args) => resizeBoth(fx, args));
  });

  describe('qcow2: growing over a longer backing file', () => {
    it.each([
      ['version 3: the new area reads zeroes', qcow2('64k', '1000k', { io: ['write -P 1 0 100k'] }, onBase), ['img.qcow2', '3M']],
      ['version 3, within the cluster that held the end', qcow2('64k', '1000k', {}, onBase), ['img.qcow2', '1001k']],
      ['version 3, 512 B clusters', qcow2('512', '1000k', { io: ['write -P 1 1023488 512'] }, onBase), ['img.qcow2', '+5M']],
      ['version 2: refused', qcow2('64k', '1000k', {}, [...v2, ...onBase]), ['img.qcow2', '3M']],
      ['version 2, within the cluster that held the end', qcow2('64k', '1000k', {}, [...v2, ...onBase]), ['img.qcow2', '1001k']],
      ['version 2, past the backing file', qcow2('64k', '8M', {}, [...v2, ...onBase]), ['img.qcow2', '9M']],
      ['preallocated metadata', qcow2('64k', '1000k', {}, onBase), ['--preallocation=metadata', 'img.qcow2', '3M']],
      ['preallocated data', qcow2('64k', '1000k', {}, onBase), ['--preallocation=full', 'img.qcow2', '3M']],
    ])('%s', (_name, fx, args) => resizeBoth(fx, args));
  });

  describe('qcow2: shrinking', () => {
    const spread = ['write -P 1 0 64k', 'write -P 2 900k 200k', 'write -P 3 3M 1M', 'write -z 5M 64k', 'write -c -P 4 6M 64k', 'write -P 5 8388096 512'];
    it.each([
      ['refused without --shrink', qcow2('64k', '8M', { io: spread }), ['img.qcow2', '1M']],
      ['64 KiB clusters', qcow2('64k', '8M', { io: spread }), ['--shrink', 'img.qcow2', '1M']],
      ['to inside a cluster', qcow2('64k', '8M', { io: spread }), ['--shrink', 'img.qcow2', '1000k']],
      ['512 B clusters, L2 tables and refcount blocks freed', qcow2('512', '8M', { io: spread }), ['--shrink', 'img.qcow2', '-7M']],
      ['4 KiB clusters, version 2', qcow2('4k', '8M', { io: spread.filter((c) => !c.includes('-z')) }, v2), ['--shrink', 'img.qcow2', '2M']],
      ['2 MiB clusters', qcow2('2M', '8M', { io: ['write -P 1 0 64k', 'write -P 3 2M 1M', 'write -c -P 4 4M 2M', 'write -P 5 8388096 512'] }), ['--shrink', 'img.qcow2', '3M']],
      ['64-bit refcounts', qcow2('4k', '8M', { io: spread }, ['-o', 'refcount_bits=64']), ['--shrink', 'img.qcow2', '512']],
      ['over a backing file', qcow2('64k', '4M', { io: ['write -P 9 3M 1M'] }, onBase), ['--shrink', 'img.qcow2', '2M']],
      ['with preallocation', qcow2('64k', '8M'), ['--shrink', '--preallocation=full', 'img.qcow2', '1M']],
    ])('%s', (_name, fx, args) => resizeBoth(fx, args));

    it('then grows again: what was cut off stays gone, what was kept in the last cluster comes back', () =>
      resizeBoth(qcow2('64k', '4M', { io: ['write -P 1 0 4M'] }), ['--shrink', 'img.qcow2', '100k'], ['img.qcow2', '4M']));

    it('then grows again over a longer backing file (zeroes, not the backing data)', () =>
      resizeBoth(qcow2('4k', '4M', { io: ['write -P 1 0 4M'] }, onBase), ['--shrink', 'img.qcow2', '1M'], ['img.qcow2', '4M']));
  });

  describe('qcow2: preallocation', () => {
    it.each([
      ['metadata', qcow2('64k', '1000k', { io: ['write -P 1 0 1000k'] }), ['--preallocation=metadata', 'img.qcow2', '+2M']],
      ['falloc', qcow2('4k', '1000k', { io: ['write -P 1 0 1000k'] }), ['--preallocation=falloc', 'img.qcow2', '3M']],
      ['full', qcow2('512', '1000k', { io: ['write -P 1 0 1000k'] }), ['--preallocation=full', 'img.qcow2', '+1M']],
      ['full, version 2', qcow2('64k', '1000k', { io: ['write -P 1 0 1000k'] }, v2), ['--preallocation=full', 'img.qcow2', '+1M']],
      ['metadata, from an end inside an unallocated cluster', qcow2('64k', '100k'), ['--preallocation=metadata', 'img.qcow2', '1M']],
      ['falloc, from an end inside a cluster with data', qcow2('64k', '100k', { io: ['write -P 1 0 100k'] }), ['--preallocation=falloc', 'img.qcow2', '1M']],
      ['of nothing: refused', qcow2('64k', '1M'), ['--preallocation=metadata', 'img.qcow2', '+0']],
      ['a mode qemu-img does not know', qcow2('64k', '1M'), ['--preallocation=bogus', 'img.qcow2', '+1M']],
    ])('%s', (_name, fx, args) => resizeBoth(fx, args));
  });

  describe('qcow2: snapshots and bitmaps', () => {
    it.each([
      ['version 2 with a snapshot: refused', qcow2('64k', '1M', { io: ['write -P 1 0 1M'], prep: [['snapshot', '-c', 's1', '@']] }, v2), ['img.qcow2', '2M']],
      ['version 3 with a snapshot, grown', qcow2('64k', '1M', { io: ['write -P 1 0 1M'], prep: [['snapshot', '-c', 's1', '@']] }), ['img.qcow2', '2M']],
      ['version 3 with a snapshot sharing the clusters cut off', qcow2('4k', '2M', { io: ['write -P 1 0 2M'], prep: [['snapshot', '-c', 's1', '@']] }), ['--shrink', 'img.qcow2', '1M']],
    ])('%s', (_name, fx, args) => resizeBoth(fx, args));

    it.skipIf(!qemu.storageDaemon).each([
      ['grown', ['img.qcow2', '+8M']],
      ['shrunk, bits past the new end dropped', ['--shrink', 'img.qcow2', '1M']],
    ])('a persistent bitmap, %s, keeps the same bits as qemu-img leaves', async (_name, args) => {
      // One recording bitmap of fine granularity, one disabled of the default.
      const fx = qcow2('64k', '4M', { prep: [['bitmap', '--add', '-g', '512', '@', 'fine'], ['bitmap', '--add', '--disable', '@', 'off']] });
      await build(fx);
      for (const d of [s.b, s.q]) await must('qemu-io', ['-f', 'qcow2', '-c', 'write 0 64k', '-c', 'write 3M 192k', 'img.qcow2'], d);
      await expectSame(['resize', ...args], s);
      const b = await withDaemon('qsd', join(s.b, 'img.qcow2'), bitmapView);
      const q = await withDaemon('qsd', join(s.q, 'img.qcow2'), bitmapView);
      expect(b).toEqual(q);
      expect((await qemuImgIn(['check', 'img.qcow2'], s.b)).code).toBe(0);
    });
  });

  describe('bad sizes and command lines', () => {
    const img = qcow2('64k', '1M');
    it.each([
      ['0'], ['-2M'], ['-1M'], ['+8E'], ['10E'], ['8E'], ['9223372036854775807'], ['9223372036854775808'],
      ['18446744073709551616'], ['abc'], [''], ['1.5k'], ['1e3'], ['+0x1k'], [' 3M'], ['0x100000'], ['-0'], ['+-1'],
    ])('size %j', (size) => resizeBoth(img, ['img.qcow2', size]));

    it.each([
      [[]], [['1M']], [['img.qcow2']], [['-f', 'qcow2', '1M']], [['-x', 'img.qcow2', '1M']], [['-qx', 'img.qcow2', '1M']],
      [['-xq', 'img.qcow2', '1M']], [['img.qcow2', '-xq', '1M']], [['--foo=bar', 'img.qcow2', '1M']], [['img.qcow2', '-f', '1M']],
      [['img.qcow2', '--preallocation', '1M']], [['img.qcow2', '-f']], [['img.qcow2', 'other.qcow2', '1M']], [['--shrink=1', 'img.qcow2', '1M']],
      [['--', 'img.qcow2', '+0']], [['img.qcow2', '--', '-1k']], [['--shrink', '--', 'img.qcow2', '-512']], [['-fqcow2', 'img.qcow2', '+1M']],
      [['-qf', 'img.qcow2', '+1M']], [['--sh', 'img.qcow2', '-512']], [['--pre=full', 'img.qcow2', '+1M']], [['-f', 'nosuch', 'img.qcow2', '+1M']],
      [['missing.qcow2', '+1M']], [['-q', '-q', 'img.qcow2', '+1M']], [['-U', 'img.qcow2', '+1M']],
    ])('%j', (args) => resizeBoth(img, args));
  });
});
