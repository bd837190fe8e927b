/**
 * `blockemu img convert` against qemu-img 7.2 convert. Each conversion runs
 * with both tools (blockemu in b/, qemu-img in q/, same relative names);
 * their output — including the -p progress line, redrawn with "\r" — must be
 * identical, and then qemu-img judges blockemu's target: `qemu-img compare`
 * with the source, `qemu-img check`, and the same allocation as qemu-img's
 * own target (map without host offsets; for raw targets, no more disk use).
 */
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { allocated, expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

async function sparseFile(path: string, size: number): Promise<void> {
  await writeFile(path, new Uint8Array(0));
  await truncate(path, size);
}

/** qemu-img map --output=json of a target, host offsets dropped (they are the writer's choice). */
async function allocation(path: string): Promise<unknown> {
  const r = await qemuImgIn(['map', '--output=json', path]);
  expect(r.code).toBe(0);
  return (JSON.parse(r.stdout) as Array<Record<string, unknown>>).map(({ offset: _o, ...rest }) => rest);
}

describe.skipIf(!qemu.available)('blockemu img convert (vs qemu-img convert)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    const q = (...a: string[]) => must('qemu-img', a, s.dir);
    const io = (...a: string[]) => must('qemu-io', a, s.dir);
    await q('create', '-q', '-f', 'qcow2', 'src.qcow2', '64M');
    await io(
      ...['-c', 'write -P 1 0 3M', '-c', 'write -P 2 10M 1M', '-c', 'write -P 0 20M 1M', '-c', 'write -z 30M 1M'],
      ...['-c', 'write -P 5 40M 4k', '-c', 'write -P 5 41M 100', '-c', 'write -c -P 6 50M 128k', '-c', 'write -P 7 63M 1M'],
      'src.qcow2',
    );
    await sparseFile(join(s.dir, 'r.raw'), 64 << 20);
    await io('-f', 'raw', '-c', 'write -P 1 64k 5M', '-c', 'write -P 3 20M 4k', '-c', 'write -P 9 33M 12k', 'r.raw');
    await q('convert', '-O', 'qcow2', 'r.raw', 'r.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'r.qcow2', '-F', 'qcow2', 'over.qcow2');
    await io('-c', 'write -P 4 40M 64k', '-c', 'write -z 64k 64k', 'over.qcow2');
    await q('create', '-q', '-f', 'qcow2', 'short.qcow2', '1M');
    await io('-c', 'write -P 1 0 1M', 'short.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'short.qcow2', '-F', 'qcow2', 'long.qcow2', '4M');
    await io('-c', 'write -P 2 2M 64k', 'long.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=4k', 'v2.qcow2', '8M');
    await io('-c', 'write -P 1 0 100k', '-c', 'write -z 1M 64k', '-c', 'write -P 2 7M 1M', 'v2.qcow2');
    await q('create', '-q', '-f', 'qcow2', 'empty.qcow2', '64M');
  });
  afterAll(() => s.done());

  /** Converts with both tools, expects identical output, then checks blockemu's target. */
  async function convertBoth(args: string[], src: string, dst: string, fmt: 'raw' | 'qcow2'): Promise<void> {
    const { b } = await expectSame(['convert', ...args, `../${src}`, dst], s);
    expect(b.code).toBe(0);
    const mine = join(s.b, dst);
    const theirs = join(s.q, dst);
    const cmp = await qemuImgIn(['compare', '-f', fmt, mine, join(s.dir, src)]);
    expect(cmp).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    if (fmt === 'qcow2') {
      const check = await qemuImgIn(['check', mine]);
      expect(check.stdout).toMatch(/^No errors were found on the image\./);
      const stats = (r: { stdout: string }) => r.stdout.split('\n').find((l) => l.includes('% allocated'));
      expect(stats(check)).toBe(stats(await qemuImgIn(['check', theirs])));
      expect(await allocation(mine)).toEqual(await allocation(theirs));
      // Named relative to each tool's directory, so backing file names compare too.
      const info = async (cwd: string) => {
        const { 'actual-size': _a, ...rest } = JSON.parse((await qemuImgIn(['info', '--output=json', dst], cwd)).stdout) as Record<string, unknown>;
        return rest;
      };
      expect(await info(s.b)).toEqual(await info(s.q));
    } else {
      // Sparse: blockemu's raw target uses no more disk than qemu-img's, give or
      // take file-system metadata (extent-tree blocks depend on write order).
      expect(await allocated(mine)).toBeLessThanOrEqual((await allocated(theirs)) + (64 << 10));
    }
  }

  it.each([
    [['-O', 'raw'], 'src.qcow2', 'raw'],
    [[], 'src.qcow2', 'raw'],
    [['-O', 'qcow2'], 'src.qcow2', 'qcow2'],
    [['-p', '-O', 'qcow2'], 'src.qcow2', 'qcow2'],
    [['-p', '-O', 'raw'], 'src.qcow2', 'raw'],
    [['-q', '-p', '-O', 'qcow2'], 'src.qcow2', 'qcow2'],
    [['-c', '-O', 'qcow2'], 'src.qcow2', 'qcow2'],
    [['-p', '-c', '-O', 'qcow2'], 'src.qcow2', 'qcow2'],
    [['-p', '-O', 'qcow2'], 'r.raw', 'qcow2'],
    [['-p', '-O', 'raw'], 'r.raw', 'raw'],
    [['-p', '-c', '-O', 'qcow2'], 'r.raw', 'qcow2'],
    [['-S', '0', '-O', 'qcow2'], 'src.qcow2', 'qcow2'],
    [['-S', '0', '-p', '-O', 'raw'], 'src.qcow2', 'raw'],
    [['-S', '64k', '-O', 'qcow2'], 'src.qcow2', 'qcow2'],
    [['-O', 'qcow2', '-o', 'cluster_size=4k,compat=0.10'], 'src.qcow2', 'qcow2'],
    [['-O', 'qcow2', '-o', 'cluster_size=2M', '-o', 'refcount_bits=8'], 'src.qcow2', 'qcow2'],
    [['-p', '-O', 'qcow2'], 'over.qcow2', 'qcow2'],
    [['-p', '-O', 'qcow2'], 'long.qcow2', 'qcow2'],
    [['-p', '-O', 'qcow2'], 'v2.qcow2', 'qcow2'],
    [['-p', '-O', 'qcow2', '-o', 'compat=0.10'], 'v2.qcow2', 'qcow2'],
    [['-p', '-O', 'qcow2'], 'empty.qcow2', 'qcow2'],
    [['-p', '-f', 'qcow2', '-O', 'raw'], 'empty.qcow2', 'raw'],
  ])('converts like qemu-img: %j %s → %s', async (args, src, fmt) => {
    await convertBoth(args, src, `out-${Math.random().toString(36).slice(2)}.${fmt}`, fmt as 'raw' | 'qcow2');
  });

  it('with -B, writes what differs from the new backing file and zeroes where the source reads zeroes', async () => {
    await convertBoth(['-O', 'qcow2', '-B', '../src.qcow2', '-F', 'qcow2'], 'src.qcow2', 'b1.qcow2', 'qcow2');
    await convertBoth(['-p', '-O', 'qcow2', '-o', 'backing_file=../src.qcow2,backing_fmt=qcow2'], 'src.qcow2', 'b2.qcow2', 'qcow2');
  });

  it('with -B naming the source backing file, copies only the top layer', async () => {
    await convertBoth(['-p', '-O', 'qcow2', '-B', '../r.qcow2', '-F', 'qcow2'], 'over.qcow2', 'b3.qcow2', 'qcow2');
    const info = JSON.parse((await qemuImgIn(['info', '--output=json', 'b3.qcow2'], s.b)).stdout) as Record<string, unknown>;
    expect(info['backing-filename']).toBe('../r.qcow2');
    // Only over.qcow2's own clusters were copied: far less than the flattened image.
    expect(await allocated(join(s.b, 'b3.qcow2'))).toBeLessThan(1 << 20);
  });

  it.each([
    [['-O', 'vmdkx', '../src.qcow2', 'x']],
    [['-O', 'raw', '-o', 'cluster_size=4k', '../src.qcow2', 'x']],
    [['-O', 'qcow2', '-o', 'foo=1', '../src.qcow2', 'x']],
    [['-O', 'qcow2', '-o', 'cluster_size=1000', '../src.qcow2', 'x']],
    [['-O', 'qcow2', '-o', 'compat=0.10,refcount_bits=1', '../src.qcow2', 'x']],
    [['-O', 'raw', '../nonexist', 'x']],
    [['-p', '../nonexist', 'x']],
    [['-p', '-O', 'vmdkx', '../src.qcow2', 'x']],
    [['-O', 'qcow2', '-B', '../src.qcow2', '../src.qcow2', 'x']],
    [['-B', '../src.qcow2', '-F', 'qcow2', '../src.qcow2', 'x']],
    [['-c', '-O', 'raw', '../src.qcow2', 'x']],
    [['-S', '100', '../src.qcow2', 'x']],
    [['-S', 'x', '../src.qcow2', 'x']],
    [['-S', '32M', '../src.qcow2', 'x']],
    [['-O', 'raw', '../src.qcow2']],
    [[]],
    [['-O']],
    [['-x', '../src.qcow2', 'x']],
    [['-f', 'bogus', '../src.qcow2', 'x']],
    [['-f', 'qcow2', '../r.raw', 'x']],
    [['-O', 'raw', '../src.qcow2', '/nonexistent-dir/x']],
  ])('fails like qemu-img: %j', async (args) => {
    const { b } = await expectSame(['convert', ...args], s);
    expect(b.code).not.toBe(0);
  });
});
