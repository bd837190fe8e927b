/**
 * `blockemu img … --image-opts` against qemu-img 7.2: the operand is an
 * option string naming a format node over a file; the same output, the
 * same refusals (with -f, with -U against force-share=off, an unknown
 * driver, a missing file), and images left the way qemu-img leaves them
 * (iotest 279 runs info --backing-chain this way).
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('blockemu img --image-opts (vs qemu-img 7.2)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    const img = (...a: string[]) => must('qemu-img', a, s.dir);
    await img('create', '-q', '-f', 'qcow2', 'base.qcow2', '4M');
    await img('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2');
    await must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 7 0 64k', 'top.qcow2'], s.dir);
    await img('snapshot', '-c', 'snap', 'top.qcow2');
    await img('create', '-q', '-f', 'raw', 'r.raw', '1M');
  });
  afterAll(() => s.done());

  const opts = (file: string, fmt = 'qcow2') => `driver=${fmt},file.driver=file,file.filename=${file}`;
  const lines: string[][] = [
    ['info', '--image-opts', opts('top.qcow2')],
    ['info', '--backing-chain', '--image-opts', opts('top.qcow2')],
    ['info', '--output=json', '--image-opts', `driver=qcow2,file.filename=top.qcow2`],
    ['info', '--image-opts', 'file.filename=top.qcow2'],
    ['info', '--image-opts', opts('r.raw', 'raw')],
    ['info', '-f', 'qcow2', '--image-opts', opts('top.qcow2')],
    ['info', '-U', '--image-opts', `${opts('top.qcow2')},force-share=off`],
    ['info', '--image-opts', opts('missing.qcow2')],
    ['info', '--image-opts', opts('top.qcow2', 'nosuch')],
    ['info', '--image-opts', 'driver=qcow2'],
    ['measure', '-O', 'qcow2', '--image-opts', opts('top.qcow2')],
    ['snapshot', '-l', '--image-opts', opts('top.qcow2')],
  ];
  for (const l of lines) {
    it(`${l.join(' ')}: as qemu-img`, async () => {
      await expectSame(l, s.dir);
    });
  }

  it('dd --image-opts reads the image the string names', async () => {
    await expectSame(['dd', '--image-opts', '-O', 'qcow2', `if=${opts('../top.qcow2')}`, 'of=out.qcow2', 'bs=64k', 'count=2'], s);
    await expectSame(['compare', '-f', 'qcow2', '-F', 'qcow2', 'out.qcow2', '../q/out.qcow2'], s.b);
  });

  it('resize and amend through --image-opts change the image as qemu-img does', async () => {
    for (const d of [s.b, s.q]) await copyFile(join(s.dir, 'base.qcow2'), join(d, 'x.qcow2'));
    await expectSame(['resize', '--image-opts', opts('x.qcow2'), '8M'], s);
    await expectSame(['amend', '-o', 'compat=0.10', '--image-opts', opts('x.qcow2')], s);
    await expectSame(['snapshot', '-c', 's1', '--image-opts', opts('x.qcow2')], s);
    const info = async (d: string) => (await qemuImgIn(['info', '--output=json', 'x.qcow2'], d)).stdout.replace(/"(date-sec|date-nsec|actual-size)": \d+/g, '');
    expect(await info(s.b)).toEqual(await info(s.q));
    expect((await qemuImgIn(['check', 'x.qcow2'], s.b)).code).toBe(0);
  });
});
