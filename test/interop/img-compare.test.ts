/**
 * `blockemu img compare` against qemu-img 7.2 compare: messages, exit codes
 * (0 identical, 1 different, 2 error), -s strict mode and the -p progress
 * line, byte for byte.
 */
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSame, must, scratch } from './img-oracle.js';

async function sparseFile(path: string, size: number): Promise<void> {
  await writeFile(path, new Uint8Array(0));
  await truncate(path, size);
}

describe.skipIf(!qemu.available)('blockemu img compare (vs qemu-img compare)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    const q = (...a: string[]) => must('qemu-img', a, s.dir);
    const io = (...a: string[]) => must('qemu-io', a, s.dir);
    await q('create', '-q', '-f', 'qcow2', 'a.qcow2', '64M');
    await q('create', '-q', '-f', 'qcow2', 'a2.qcow2', '64M');
    await q('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', 'small-clusters.qcow2', '64M');
    // Raw files as `truncate -s` makes them, without data blocks: qemu-img create
    // would allocate the first 4 KiB, which qemu reports as data and blockemu,
    // finding raw data by reading it, as zeroes.
    await sparseFile(join(s.dir, 'a.raw'), 64 << 20);
    await sparseFile(join(s.dir, 'half.raw'), 32 << 20);
    // one byte differs in the middle of a sector
    await q('create', '-q', '-f', 'qcow2', 'byte.qcow2', '64M');
    await io('-c', 'write -P 1 1000 1', 'byte.qcow2');
    // larger images: a zero tail, a non-zero tail, and data that is zero
    await q('create', '-q', '-f', 'qcow2', 'big.qcow2', '128M');
    await q('create', '-q', '-f', 'qcow2', 'big-dirty-tail.qcow2', '128M');
    await io('-c', 'write -P 1 100M 1', '-c', 'write -P 1 120M 1', 'big-dirty-tail.qcow2');
    await q('create', '-q', '-f', 'qcow2', 'big-zero-data.qcow2', '128M');
    await io('-c', 'write -P 0 100M 1M', '-c', 'write -z 110M 64k', 'big-zero-data.qcow2');
    await q('create', '-q', '-f', 'qcow2', 'big-both.qcow2', '128M');
    await io('-c', 'write -P 1 100000 1', '-c', 'write -P 1 100M 1', 'big-both.qcow2');
    // zero clusters vs unallocated vs zero data
    await q('create', '-q', '-f', 'qcow2', 'zc.qcow2', '64M');
    await io('-c', 'write -z 0 64k', 'zc.qcow2');
    await q('create', '-q', '-f', 'qcow2', 'zd.qcow2', '64M');
    await io('-c', 'write -P 0 0 64k', 'zd.qcow2');
    // data in a sparse raw file and the same data in qcow2 (many chunks: progress steps)
    await sparseFile(join(s.dir, 'r.raw'), 64 << 20);
    await io('-f', 'raw', '-c', 'write -P 1 64k 5M', '-c', 'write -P 3 20M 4k', '-c', 'write -P 4 40M 9M', 'r.raw');
    await q('convert', '-O', 'qcow2', 'r.raw', 'r.qcow2');
    await q('convert', '-O', 'qcow2', '-c', 'r.raw', 'r-compressed.qcow2');
    await q('create', '-q', '-f', 'qcow2', 'r-diff.qcow2', '64M');
    await io('-c', 'write -P 1 64k 5M', '-c', 'write -P 3 20M 4k', '-c', 'write -P 4 40M 9M', '-c', 'write -P 5 45M 512', 'r-diff.qcow2');
    // chains: identical content through a backing file; a backing file shorter than its overlay
    await q('create', '-q', '-f', 'qcow2', '-b', 'r.qcow2', '-F', 'qcow2', 'over.qcow2');
    await io('-c', 'write -P 4 40M 64k', 'over.qcow2');
    await q('create', '-q', '-f', 'qcow2', 'short.qcow2', '1M');
    await io('-c', 'write -P 1 0 1M', 'short.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'short.qcow2', '-F', 'qcow2', 'long.qcow2', '4M');
    await q('convert', '-O', 'qcow2', 'long.qcow2', 'long-flat.qcow2');
    await q('convert', '-O', 'raw', 'long.qcow2', 'long-flat.raw');
  });
  afterAll(() => s.done());

  const pairs: Array<[string, string]> = [
    ['a.qcow2', 'a2.qcow2'],
    ['a.qcow2', 'a.raw'],
    ['a.qcow2', 'small-clusters.qcow2'],
    ['a.qcow2', 'byte.qcow2'],
    ['byte.qcow2', 'a.qcow2'],
    ['a.qcow2', 'big.qcow2'],
    ['big.qcow2', 'a.qcow2'],
    ['a.qcow2', 'big-dirty-tail.qcow2'],
    ['big-dirty-tail.qcow2', 'a.qcow2'],
    ['a.qcow2', 'big-zero-data.qcow2'],
    ['a.qcow2', 'big-both.qcow2'],
    ['byte.qcow2', 'big-both.qcow2'],
    ['a.raw', 'half.raw'],
    ['a.qcow2', 'zc.qcow2'],
    ['zc.qcow2', 'zc.qcow2'],
    ['zc.qcow2', 'zd.qcow2'],
    ['zd.qcow2', 'a.raw'],
    ['r.raw', 'r.qcow2'],
    ['r.qcow2', 'r-compressed.qcow2'],
    ['r.qcow2', 'r-diff.qcow2'],
    ['r.raw', 'a.qcow2'],
    ['r.qcow2', 'over.qcow2'],
    ['over.qcow2', 'r.raw'],
    ['long.qcow2', 'long-flat.qcow2'],
    ['long.qcow2', 'long-flat.raw'],
    ['long-flat.qcow2', 'long.qcow2'],
  ];

  it.each(pairs)('compares %s with %s as qemu-img does (plain, -s, -p, -q)', async (x, y) => {
    await expectSame(['compare', x, y], s.dir);
    await expectSame(['compare', '-s', x, y], s.dir);
    await expectSame(['compare', '-p', x, y], s.dir);
    await expectSame(['compare', '-p', '-s', x, y], s.dir);
    await expectSame(['compare', '-q', x, y], s.dir);
  });

  it('reports a mismatch at the start of the differing sector, exit 1', async () => {
    const { b } = await expectSame(['compare', 'a.qcow2', 'byte.qcow2'], s.dir);
    expect(b).toMatchObject({ code: 1, stdout: 'Content mismatch at offset 512!\n' });
  });

  it('counts a size difference with a zero tail as identical, exit 0', async () => {
    const { b } = await expectSame(['compare', 'a.qcow2', 'big-zero-data.qcow2'], s.dir);
    expect(b).toMatchObject({ code: 0, stdout: 'Warning: Image size mismatch!\nImages are identical.\n' });
  });

  it.each([
    [['-f', 'raw', '-F', 'qcow2', 'a.qcow2', 'byte.qcow2']],
    [['-F', 'raw', 'a.qcow2', 'byte.qcow2']],
    [['-f', 'qcow2', '-F', 'raw', 'a.qcow2', 'a.raw']],
    [['-U', 'a.qcow2', 'a2.qcow2']],
  ])('honours formats like qemu-img: %j', async (args) => {
    await expectSame(['compare', ...args], s.dir);
  });

  it.each([
    [['nonexist', 'a.qcow2']],
    [['a.qcow2', 'nonexist']],
    [['-p', 'a.qcow2', 'nonexist']],
    [['a.qcow2']],
    [[]],
    [['a.qcow2', 'a2.qcow2', 'a.raw']],
    [['-f', 'qcow2', 'a.raw', 'a.qcow2']],
    [['-F', 'bogus', 'a.qcow2', 'a.raw']],
    [['-x', 'a.qcow2', 'a2.qcow2']],
    [['-f']],
  ])('fails like qemu-img: %j', async (args) => {
    const { b } = await expectSame(['compare', ...args], s.dir);
    expect(b.code).not.toBe(0);
  });
});
