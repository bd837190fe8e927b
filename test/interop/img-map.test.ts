/**
 * `blockemu img map` against qemu-img 7.2 map, human and JSON, on qcow2
 * images and chains built by QEMU's own tools, and on raw images whose
 * allocation matches their content (made with truncate + qemu-io writes:
 * blockemu finds raw data by reading it, qemu by asking the file system for
 * holes, so only such files can be compared line for line).
 */
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSame, must, scratch } from './img-oracle.js';

/** A file of `size` bytes with no data blocks at all (what `truncate -s` makes). */
async function sparseFile(path: string, size: number): Promise<void> {
  await writeFile(path, new Uint8Array(0));
  await truncate(path, size);
}

describe.skipIf(!qemu.available)('blockemu img map (vs qemu-img map)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    const q = (...a: string[]) => must('qemu-img', a, s.dir);
    const io = (...a: string[]) => must('qemu-io', a, s.dir);
    // data, a zero cluster, compressed clusters and holes in one image
    await q('create', '-q', '-f', 'qcow2', 'b.qcow2', '64M');
    await io('-c', 'write -P 1 0 192k', '-c', 'write -P 2 1M 64k', '-c', 'write -z 2M 128k', '-c', 'write -c -P 3 4M 64k', '-c', 'write -c -P 3 4160k 64k', 'b.qcow2');
    // an overlay on it, plus one without compressed clusters for the human table
    await q('create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'c.qcow2');
    await io('-c', 'write -P 5 64k 64k', '-c', 'write -z 1M 4k', '-c', 'write -P 6 8M 4k', 'c.qcow2');
    await q('create', '-q', '-f', 'qcow2', 'plain.qcow2', '64M');
    await io('-c', 'write -P 1 0 3M', '-c', 'write -P 2 10M 1M', '-c', 'write -P 2 63M 1M', 'plain.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'plain.qcow2', '-F', 'qcow2', 'over-plain.qcow2');
    await io('-c', 'write -P 7 1M 64k', '-c', 'write -z 10M 64k', 'over-plain.qcow2');
    // a backing file shorter than its overlay
    await q('create', '-q', '-f', 'qcow2', 'short.qcow2', '1M');
    await io('-c', 'write -P 1 0 1M', 'short.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'short.qcow2', '-F', 'qcow2', 'long.qcow2', '4M');
    await io('-c', 'write -z 0 64k', '-c', 'write -P 2 2M 64k', 'long.qcow2');
    // a zero cluster that keeps its host cluster (written, then zeroed)
    await q('create', '-q', '-f', 'qcow2', 'zero-alloc.qcow2', '1M');
    await io('-c', 'write -P 1 0 64k', '-c', 'write -z 0 64k', 'zero-alloc.qcow2');
    // a three-level chain in a subdirectory, bottom raw
    await mkdir(join(s.dir, 'sub'));
    await sparseFile(join(s.dir, 'sub', 'r.raw'), 2 << 20);
    await io('-f', 'raw', '-c', 'write -P 7 64k 64k', 'sub/r.raw');
    await q('create', '-q', '-f', 'qcow2', '-b', 'r.raw', '-F', 'raw', 'sub/mid.qcow2', '4M');
    await io('-c', 'write -P 8 1M 128k', 'sub/mid.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'sub/top.qcow2', '8M');
    await io('-c', 'write -P 9 1088k 64k', '-c', 'write -z 3M 64k', 'sub/top.qcow2');
    // compat=0.10: zero writes cannot use zero clusters
    await q('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=4k', 'v2.qcow2', '4M');
    await io('-c', 'write -z 0 64k', '-c', 'write -P 1 1M 8k', 'v2.qcow2');
    // sparse raw files
    await sparseFile(join(s.dir, 'r.raw'), 1 << 20);
    await io('-f', 'raw', '-c', 'write -P 1 4k 8k', '-c', 'write -P 1 512k 4k', 'r.raw');
    await sparseFile(join(s.dir, 'hole.raw'), 1 << 20);
    await writeFile(join(s.dir, 'empty.raw'), new Uint8Array(0));
    // a raw file whose length is no whole number of sectors: QEMU counts it in sectors, the tail as zeroes
    await writeFile(join(s.dir, 'odd.raw'), new Uint8Array(1000).fill(3));
  });
  afterAll(() => s.done());

  it.each([
    'b.qcow2',
    'c.qcow2',
    'plain.qcow2',
    'over-plain.qcow2',
    'long.qcow2',
    'short.qcow2',
    'sub/top.qcow2',
    'sub/mid.qcow2',
    'v2.qcow2',
    'r.raw',
    'hole.raw',
    'empty.raw',
    'odd.raw',
  ])('maps %s as qemu-img does (JSON and human)', async (file) => {
    await expectSame(['map', '--output', 'json', file], s.dir);
    await expectSame(['map', '--output=json', '-f', file.endsWith('.raw') ? 'raw' : 'qcow2', file], s.dir);
    // b.qcow2 and c.qcow2 have compressed clusters: qemu-img's human table stops there with an error.
    const { b } = await expectSame(['map', file], s.dir);
    expect(b.code).toBe(file === 'b.qcow2' || file === 'c.qcow2' ? 1 : 0);
  });

  it('counts a raw file of no whole number of sectors as qemu-img does', async () => {
    await expectSame(['info', '-f', 'raw', 'odd.raw'], s.dir);
    await expectSame(['info', '--output=json', '-f', 'raw', 'odd.raw'], s.dir);
  });

  it('reports the host offset of an allocated zero cluster (zero-alloc)', async () => {
    await expectSame(['map', '--output=json', 'zero-alloc.qcow2'], s.dir);
  });

  it('lists data from every layer under the name qemu-img gives each file', async () => {
    const { b } = await expectSame(['map', 'sub/top.qcow2'], s.dir);
    expect(b.stdout).toContain('sub/r.raw');
    expect(b.stdout).toContain('sub/mid.qcow2');
  });

  it.each([
    [['--start-offset', '1.5M', '--max-length', '1M', '--output', 'json', 'plain.qcow2']],
    [['--start-offset', '1M', '--max-length', '3M', '--output', 'json', 'sub/top.qcow2']],
    [['--start-offset', '1M', 'sub/top.qcow2']],
    [['--start-offset', '100M', '--output', 'json', 'plain.qcow2']],
    [['--start-offset', '100M', 'plain.qcow2']],
    [['--max-length', '0', '--output', 'json', 'plain.qcow2']],
  ])('honours --start-offset/--max-length like qemu-img: %j', async (args) => {
    await expectSame(['map', ...args], s.dir);
  });

  it.each([
    [['nonexist']],
    [['--output', 'xml', 'plain.qcow2']],
    [[]],
    [['plain.qcow2', 'b.qcow2']],
    [['-f', 'raw']],
    [['-f', 'qcow2', 'r.raw']],
    [['-f', 'bogus', 'r.raw']],
    [['--start-offset', 'x', 'plain.qcow2']],
    [['--max-length', 'x', 'plain.qcow2']],
    [['-x', 'plain.qcow2']],
  ])('fails like qemu-img: %j', async (args) => {
    const { b } = await expectSame(['map', ...args], s.dir);
    expect(b.code).not.toBe(0);
  });

  it('fails like qemu-img when a backing file is missing', async () => {
    await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'gone.qcow2', '-F', 'qcow2', '-u', 'orphan.qcow2', '1M'], s.dir);
    await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'orphan.qcow2', '-F', 'qcow2', '-u', 'sub/orphan-top.qcow2', '1M'], s.dir);
    await expectSame(['map', 'orphan.qcow2'], s.dir);
    await expectSame(['map', '--output=json', 'orphan.qcow2'], s.dir);
  });
});
