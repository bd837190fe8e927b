/**
 * `blockemu img amend` against `qemu-img amend` 7.2: the same qcow2 image
 * (data, zero clusters with and without a host cluster) built in b/ and q/,
 * the same command line through each tool, the same stdout (progress
 * included), stderr and exit code; then the same `qemu-img info` and
 * `qemu-img map`, identical contents and a clean `qemu-img check`.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { blockemuImg, expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('blockemu img amend (vs qemu-img amend)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
  });
  afterAll(() => s.done());

  async function build(create: string[], backing = false): Promise<void> {
    for (const d of [s.b, s.q]) {
      for (const f of await readdir(d)) await rm(join(d, f));
      if (backing) {
        await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '4M'], d);
        await must('qemu-io', ['-c', 'write -P 9 0 4M', 'base.qcow2'], d);
      }
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', ...create, ...(backing ? ['-b', 'base.qcow2', '-F', 'qcow2'] : []), 'am.qcow2', '4M'], d);
      await must('qemu-io', ['-c', 'write -P 1 0 64k', '-c', 'write -z 1M 128k', '-c', 'write -P 2 2M 64k', '-c', 'write -z 2M 64k', 'am.qcow2'], d);
      await must('qemu-img', ['create', '-q', '-f', 'raw', 'r.img', '1M'], d);
    }
  }

  async function sameImages(): Promise<void> {
    const info = async (d: string) => (await qemuImgIn(['info', 'am.qcow2'], d)).stdout.replace(/disk size.*\n/, '');
    expect(await info(s.b)).toBe(await info(s.q));
    expect((await qemuImgIn(['map', '--output=json', 'am.qcow2'], s.b)).stdout).toBe((await qemuImgIn(['map', '--output=json', 'am.qcow2'], s.q)).stdout);
    expect((await qemuImgIn(['compare', join(s.b, 'am.qcow2'), join(s.q, 'am.qcow2')])).stdout).toBe('Images are identical.\n');
    expect((await qemuImgIn(['check', 'am.qcow2'], s.b)).code).toBe(0);
  }

  const cases: [string, string[], string[], boolean?][] = [
    ['downgrade to compat=0.10 (zero clusters expanded)', [], ['-o', 'compat=0.10']],
    ['downgrade over a backing file (zero clusters become clusters of zeroes)', [], ['-p', '-o', 'compat=0.10'], true],
    ['upgrade to compat=1.1, with progress', ['-o', 'compat=0.10'], ['-p', '-o', 'compat=1.1']],
    ['lazy refcounts on', [], ['-o', 'lazy_refcounts=on']],
    ['lazy refcounts off', ['-o', 'lazy_refcounts=on'], ['-q', '-o', 'lazy_refcounts=off']],
    ['grow and upgrade', ['-o', 'compat=v2'], ['-o', 'compat=v3,size=8M']],
    ['shrink', [], ['-f', 'qcow2', '-o', 'size=1M']],
    ['backing file named as it is', [], ['-o', 'backing_file=base.qcow2,backing_fmt=qcow2'], true],
    ['the same refcount width', [], ['-o', 'refcount_bits=16']],
    ['a new refcount width, with progress', [], ['-p', '-o', 'refcount_bits=8']],
    ['upgrade and a new refcount width', ['-o', 'compat=0.10'], ['-p', '-o', 'compat=1.1,refcount_bits=64']],
    ['a new refcount width and a downgrade', ['-o', 'refcount_bits=64'], ['-p', '-o', 'compat=0.10,refcount_bits=16']],
    ['a new refcount width, lazy refcounts and a size', [], ['-o', 'refcount_bits=4,lazy_refcounts=on,size=8M']],
  ];
  for (const [what, create, args, backing] of cases) {
    it(`${what}: same output, same image`, async () => {
      await build(create, backing);
      await expectSame(['amend', ...args, 'am.qcow2'], s);
      await sameImages();
    });
  }

  it('refusals in qemu-img words', async () => {
    await build([]);
    for (const args of [
      ['amend', 'am.qcow2'],
      ['amend', '-o', 'compat=0.10'],
      ['amend', '-o', 'cluster_size=4k', 'am.qcow2'],
      ['amend', '-o', 'foo=1', 'am.qcow2'],
      ['amend', '-o', 'compat=1.5', 'am.qcow2'],
      ['amend', '-o', 'compat=0.10,refcount_bits=8', 'am.qcow2'],
      ['amend', '-o', 'compat=0.10,lazy_refcounts=on', 'am.qcow2'],
      ['amend', '-o', 'lazy_refcounts=maybe', 'am.qcow2'],
      ['amend', '-o', 'refcount_bits=3', 'am.qcow2'],
      ['amend', '-o', 'backing_file=x', 'am.qcow2'],
      ['amend', '-f', 'raw', '-o', 'size=2M', 'r.img'],
      ['amend', '-t', 'bogus', '-o', 'compat=0.10', 'am.qcow2'],
      ['amend', '-o', 'compat=0.10', 'missing.qcow2'],
      ['amend', '-x', 'am.qcow2'],
    ]) {
      await expectSame(args, s);
    }
    await sameImages();
  });
});
