/**
 * `blockemu img dd` against `qemu-img dd` 7.2: the same inputs in b/ and
 * q/, the same command lines, the same stdout, stderr and exit codes, and
 * output images with the same `qemu-img info`, `qemu-img map` and contents.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('blockemu img dd (vs qemu-img dd)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    for (const d of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'in.qcow2', '3M'], d);
      await must('qemu-io', ['-c', 'write -P 7 0 1M', '-c', 'write -P 8 2M 512k', 'in.qcow2'], d);
      await must('qemu-img', ['create', '-q', '-f', 'raw', 'odd.img', '1000'], d);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 1000', 'odd.img'], d);
    }
  });
  afterAll(() => s.done());

  const lines = [
    'if=in.qcow2 of=out.raw',
    '-O qcow2 if=in.qcow2 of=out.qcow2 bs=64k',
    '-O qcow2 if=in.qcow2 of=out.qcow2 bs=1000 count=3',
    '-O qcow2 if=in.qcow2 of=out.qcow2 bs=4k skip=100000',
    '-f qcow2 if=in.qcow2 of=out.raw bs=1M skip=1 count=1',
    'if=odd.img of=out.raw bs=300',
    '-O qcow2 -U if=odd.img of=out.qcow2',
    // refusals
    'if=in.qcow2 of=out.raw bs=3x',
    'if=in.qcow2 of=out.raw bs=0',
    'if=in.qcow2 of=out.raw count=-1',
    'if=in.qcow2 of=out.raw foo=1',
    'if=in.qcow2 of=out.raw junk',
    'if=in.qcow2',
    '-O foo if=in.qcow2 of=out.x',
    'if=missing of=out.x',
    '-x if=in.qcow2 of=out.raw',
  ];
  it('the same copies and refusals as qemu-img dd', async () => {
    for (const l of lines) {
      for (const d of [s.b, s.q]) for (const f of await readdir(d)) if (f.startsWith('out')) await rm(join(d, f));
      await expectSame(['dd', ...l.split(' ')], s);
      for (const f of (await readdir(s.q)).filter((x) => x.startsWith('out'))) {
        const info = async (d: string) => (await qemuImgIn(['info', f], d)).stdout.replace(/disk size.*\n/, '');
        expect(await info(s.b)).toBe(await info(s.q));
        expect((await qemuImgIn(['map', '--output=json', f], s.b)).stdout).toBe((await qemuImgIn(['map', '--output=json', f], s.q)).stdout);
        expect((await qemuImgIn(['compare', join(s.b, f), join(s.q, f)])).stdout).toBe('Images are identical.\n');
      }
    }
  });
});
