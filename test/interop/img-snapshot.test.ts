/**
 * `blockemu img snapshot` against `qemu-img snapshot` 7.2: the same command
 * lines on the same images (built by QEMU's tools in b/ and q/), the same
 * stdout, stderr and exit codes — the DATE column aside, which is the clock
 * of each run — and then the same images: `qemu-img compare` finds them
 * identical, `qemu-img check` finds blockemu's clean, and each tool lists
 * and applies the snapshots the other wrote.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu, type RunResult } from '../helpers/qemu.js';
import { blockemuImg, must, normalise, qemuImgIn, scratch } from './img-oracle.js';

const DATE = /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/g;
// Dates differ by when each tool ran; the host file system's block allocation ("disk size") by its own
// heuristics (speculative preallocation), not by what either tool wrote: both are compared as placeholders.
const undated = (r: RunResult): RunResult => ({
  ...r,
  stdout: r.stdout.replace(DATE, 'YYYY-MM-DD hh:mm:ss').replace(/^disk size: .*$/m, 'disk size: N'),
});

describe.skipIf(!qemu.available)('blockemu img snapshot (vs qemu-img snapshot)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
  });
  afterAll(() => s.done());

  /** The same image in b/ and q/: qemu-img create options, then qemu-io commands. */
  async function build(create: string[], io: string[] = [], name = 'img.qcow2'): Promise<void> {
    for (const d of [s.b, s.q]) {
      for (const f of await readdir(d)) await rm(join(d, f));
      await must('qemu-img', ['create', '-q', ...create, name, create.includes('raw') ? '1M' : '4M'], d);
      if (io.length) await must('qemu-io', ['-f', create.includes('raw') ? 'raw' : 'qcow2', ...io.flatMap((c) => ['-c', c]), name], d);
    }
  }

  async function same(args: string[]): Promise<void> {
    const b = undated(normalise(await blockemuImg(args, s.b)));
    const q = undated(await qemuImgIn(args, s.q));
    expect({ args, ...b }).toEqual({ args, ...q });
  }

  async function io(dir: string, ...cmds: string[]): Promise<string> {
    return must('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), 'img.qcow2'], dir);
  }

  /** Both images read the same and blockemu's is clean. */
  async function sameImages(): Promise<void> {
    const cmp = await qemuImgIn(['compare', '-f', 'qcow2', '-F', 'qcow2', join(s.b, 'img.qcow2'), join(s.q, 'img.qcow2')]);
    expect(cmp.stdout).toBe('Images are identical.\n');
    const chk = await qemuImgIn(['check', 'img.qcow2'], s.b);
    expect(chk.stdout).toContain('No errors were found on the image.');
    expect(chk.code).toBe(0);
  }

  const compressed = 'write -c -P 5 2M 64k';
  // Many compressed streams share a host cluster: a small refcount cannot count them once more (see the refusals).
  const layouts: [string, string[], string][] = [
    ['64k clusters', ['-f', 'qcow2'], compressed],
    ['512-byte clusters (several L2 tables)', ['-f', 'qcow2', '-o', 'cluster_size=512'], compressed],
    ['compat=0.10', ['-f', 'qcow2', '-o', 'compat=0.10,cluster_size=4k'], compressed],
    ['refcount_bits=4', ['-f', 'qcow2', '-o', 'refcount_bits=4,cluster_size=4k'], 'write -P 5 2M 64k'],
  ];
  for (const [what, create, at2M] of layouts) {
    it(`create, list, apply and delete on ${what}: same output, same images, clean`, async () => {
      await build(create, ['write -P 1 0 1M', at2M, 'write -z 3M 64k']);
      await same(['snapshot', '-c', 'first', 'img.qcow2']);
      await sameImages();
      for (const d of [s.b, s.q]) await io(d, 'write -P 2 64k 64k', 'write -P 3 1M 512k', 'discard 2M 64k');
      await same(['snapshot', '-c', 'second', 'img.qcow2']);
      await same(['snapshot', '-l', 'img.qcow2']);
      await same(['info', 'img.qcow2']);
      await same(['snapshot', '-a', 'first', 'img.qcow2']);
      await sameImages();
      await io(s.b, 'read -P 1 0 1M', 'read -P 5 2M 64k', 'read -P 0 3M 64k');
      await same(['snapshot', '-a', '2', 'img.qcow2']);
      await sameImages();
      await io(s.b, 'read -P 2 64k 64k', 'read -P 3 1M 512k', 'read -P 0 2M 64k');
      await same(['snapshot', '-d', 'first', 'img.qcow2']);
      await sameImages();
      await same(['snapshot', '-l', 'img.qcow2']);
      await same(['snapshot', '-d', 'second', 'img.qcow2']);
      await same(['snapshot', '-l', 'img.qcow2']);
      await sameImages();
    });
  }

  it('snapshots written by one tool are listed, applied and deleted by the other', async () => {
    await build(['-f', 'qcow2'], ['write -P 1 0 256k']);
    // blockemu writes, qemu-img reads.
    expect((await blockemuImg(['snapshot', '-c', 'mine', 'img.qcow2'], s.b)).code).toBe(0);
    await io(s.b, 'write -P 9 0 64k');
    expect((await qemuImgIn(['snapshot', '-l', 'img.qcow2'], s.b)).stdout).toMatch(/^1 +mine +0 B /m);
    expect((await qemuImgIn(['snapshot', '-a', 'mine', 'img.qcow2'], s.b)).code).toBe(0);
    await io(s.b, 'read -P 1 0 256k');
    expect((await qemuImgIn(['snapshot', '-d', 'mine', 'img.qcow2'], s.b)).code).toBe(0);
    expect((await qemuImgIn(['check', 'img.qcow2'], s.b)).code).toBe(0);
    // qemu-img writes, blockemu reads; blockemu io writes over a shared cluster.
    expect((await qemuImgIn(['snapshot', '-c', 'theirs', 'img.qcow2'], s.q)).code).toBe(0);
    const bio = await blockemuImg(['snapshot', '-l', 'img.qcow2'], s.q);
    expect(bio.stdout).toMatch(/^1 +theirs +0 B /m);
    await io(s.q, 'write -P 7 0 128k');
    expect((await blockemuImg(['snapshot', '-a', 'theirs', 'img.qcow2'], s.q)).code).toBe(0);
    await io(s.q, 'read -P 1 0 256k');
    expect((await blockemuImg(['snapshot', '-d', 'theirs', 'img.qcow2'], s.q)).code).toBe(0);
    expect((await qemuImgIn(['check', 'img.qcow2'], s.q)).code).toBe(0);
    expect((await qemuImgIn(['snapshot', '-l', 'img.qcow2'], s.q)).stdout).toBe('');
  });

  it('refusals and usage errors in qemu-img words', async () => {
    await build(['-f', 'qcow2'], ['write -P 1 0 64k']);
    await same(['snapshot', '-c', 'x', 'img.qcow2']);
    for (const args of [
      ['snapshot'],
      ['snapshot', '-l', '-c', 'y', 'img.qcow2'],
      ['snapshot', '-x', 'img.qcow2'],
      ['snapshot', '-c'],
      ['snapshot', '-f', 'qcow2', '-l', 'img.qcow2'],
      ['snapshot', '-l', 'img.qcow2', 'more'],
      ['snapshot', '-a', 'nope', 'img.qcow2'],
      ['snapshot', '-d', 'nope', 'img.qcow2'],
      ['snapshot', '-l', 'missing.qcow2'],
      ['snapshot', 'img.qcow2'],
      ['snapshot', '-U', '-c', 'z', 'img.qcow2'],
      ['snapshot', '-U', '-l', 'img.qcow2'],
    ]) {
      await same(args);
    }
    // One bit of refcount cannot count a second reference: refused, as QEMU refuses it.
    await build(['-f', 'qcow2', '-o', 'refcount_bits=1'], ['write -P 1 0 64k']);
    await same(['snapshot', '-c', 'x', 'img.qcow2']);
    await same(['check', 'img.qcow2']);
    // Nor one more reference on compressed clusters shared up to the maximum: the same failure, the same damage.
    await build(['-f', 'qcow2', '-o', 'refcount_bits=2,cluster_size=4k'], ['write -P 1 0 1M', compressed]);
    await same(['snapshot', '-c', 'x', 'img.qcow2']);
    await same(['check', 'img.qcow2']);
    await build(['-f', 'raw'], [], 'r.img');
    for (const a of [['-l'], ['-c', 's'], ['-a', 's'], ['-d', 's']]) await same(['snapshot', ...a, 'r.img']);
  });
});
