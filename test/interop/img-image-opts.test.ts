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
import { blockemuImg, expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

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
    ['map', '--image-opts', opts('top.qcow2')],
    ['map', '--output=json', '--image-opts', opts('top.qcow2')],
    ['compare', '--image-opts', opts('top.qcow2'), opts('base.qcow2')],
    ['compare', '--image-opts', opts('top.qcow2'), opts('top.qcow2')],
    ['compare', '--image-opts', opts('top.qcow2'), 'top.qcow2'],
    ['check', '--image-opts', opts('top.qcow2')],
    ['check', '--output=json', '--image-opts', opts('top.qcow2')],
    ['check', '--image-opts', opts('r.raw', 'raw')],
    ['check', '--image-opts', opts('missing.qcow2')],
    ['check', '-f', 'qcow2', '--image-opts', opts('top.qcow2')],
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
    await expectSame(['rebase', '-u', '-b', '', '--image-opts', opts('x.qcow2')], s);
    const info = async (d: string) => (await qemuImgIn(['info', '--output=json', 'x.qcow2'], d)).stdout.replace(/"(date-sec|date-nsec|actual-size)": \d+/g, '');
    expect(await info(s.b)).toEqual(await info(s.q));
    expect((await qemuImgIn(['check', 'x.qcow2'], s.b)).code).toBe(0);
  });

  it('commit, rebase and convert take --image-opts (convert -n also --target-image-opts) as qemu-img does', async () => {
    for (const d of [s.b, s.q]) {
      await copyFile(join(s.dir, 'base.qcow2'), join(d, 'base.qcow2'));
      await copyFile(join(s.dir, 'top.qcow2'), join(d, 'c.qcow2'));
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'c.qcow2', '-F', 'qcow2', 'over.qcow2'], d);
      await must('qemu-io', ['-c', 'write -P 9 1M 64k', 'over.qcow2'], d);
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'dst.qcow2', '4M'], d);
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'other.qcow2', '4M'], d);
    }
    await expectSame(['convert', '--image-opts', '-O', 'qcow2', opts('over.qcow2'), 'conv.qcow2'], s);
    await expectSame(['convert', '-n', '--target-image-opts', 'over.qcow2', opts('dst.qcow2')], s);
    await expectSame(['convert', '--target-image-opts', 'over.qcow2', opts('dst.qcow2')], s);
    await expectSame(['convert', '-n', '-O', 'qcow2', '--target-image-opts', 'over.qcow2', opts('dst.qcow2')], s);
    await expectSame(['rebase', '-b', 'other.qcow2', '-F', 'qcow2', '--image-opts', opts('over.qcow2')], s);
    await expectSame(['commit', '--image-opts', `${opts('over.qcow2')},read-only=on`], s);
    await expectSame(['commit', '--image-opts', opts('over.qcow2')], s);
    // A filter above the format: qemu-img commits through it (and cannot empty it); blockemu writes only through a format at the top.
    const filtered = await blockemuImg(['commit', '--image-opts', 'driver=blkdebug,image.driver=qcow2,image.file.driver=file,image.file.filename=over.qcow2'], s.b);
    expect(filtered).toMatchObject({ code: 1, stderr: expect.stringContaining("a 'blkdebug' node there is read-only here") });
    for (const f of ['conv.qcow2', 'dst.qcow2', 'over.qcow2', 'other.qcow2']) {
      expect((await qemuImgIn(['compare', join(s.b, f), join(s.q, f)])).stdout, f).toBe('Images are identical.\n');
      expect((await qemuImgIn(['check', f], s.b)).code, f).toBe(0);
    }
  });
});
