/**
 * `blockemu img commit` against `qemu-img commit` 7.2: the same chain
 * (base <- mid <- top, built by QEMU's tools in b/ and q/), the same
 * command lines, the same stdout, stderr and exit codes; afterwards every
 * image of the two chains reads the same (`qemu-img compare`), the top
 * still reads what it read before, and every image passes `qemu-img check`.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { blockemuImg, expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('blockemu img commit (vs qemu-img commit)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
  });
  afterAll(() => s.done());

  /** base (6M, shorter than the rest) <- mid <- top in b/ and q/, and a raw copy of what top reads. */
  async function chain(topOpts: string[] = []): Promise<void> {
    for (const d of [s.b, s.q]) {
      for (const f of await readdir(d)) await rm(join(d, f));
      const img = (args: string[]) => must('qemu-img', args, d);
      const io = (f: string, ...c: string[]) => must('qemu-io', ['-f', 'qcow2', ...c.flatMap((x) => ['-c', x]), f], d);
      await img(['create', '-q', '-f', 'qcow2', 'base.qcow2', '6M']);
      await io('base.qcow2', 'write -P 1 0 3M', 'write -P 4 5M 512k');
      await img(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'mid.qcow2', '8M']);
      await io('mid.qcow2', 'write -P 2 1M 1M', 'write -z 2M 64k');
      await img(['create', '-q', '-f', 'qcow2', ...topOpts, '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2', '8M']);
      await io('top.qcow2', 'write -P 3 512k 64k', 'write -P 3 7M 4k', 'write -z 5M 64k', 'write -c -P 6 6M 64k');
      await img(['convert', '-O', 'raw', 'top.qcow2', 'before.raw']);
    }
  }

  async function sameChains(): Promise<void> {
    for (const f of ['base.qcow2', 'mid.qcow2', 'top.qcow2']) {
      const cmp = await qemuImgIn(['compare', join(s.b, f), join(s.q, f)]);
      expect({ f, out: cmp.stdout }).toEqual({ f, out: 'Images are identical.\n' });
      expect({ f, code: (await qemuImgIn(['check', f], s.b)).code }).toEqual({ f, code: 0 });
      expect((await qemuImgIn(['info', f], s.b)).stdout.replace(/disk size.*\n/, '')).toBe((await qemuImgIn(['info', f], s.q)).stdout.replace(/disk size.*\n/, ''));
    }
    expect((await qemuImgIn(['compare', '-F', 'raw', 'top.qcow2', 'before.raw'], s.b)).stdout).toBe('Images are identical.\n');
  }

  const cases: [string, string[]][] = [
    ['into its backing file, emptying the image', ['commit', 'top.qcow2']],
    ['keeping the image (-d)', ['commit', '-d', '-f', 'qcow2', 'top.qcow2']],
    ['two levels down (-b), base grown', ['commit', '-b', 'base.qcow2', 'top.qcow2']],
    ['quietly, rate-limited, cache mode given', ['commit', '-q', '-r', '64M', '-t', 'none', 'top.qcow2']],
  ];
  for (const [what, args] of cases) {
    it(`commit ${what}: same output, same chains`, async () => {
      await chain();
      await expectSame(args, s);
      await sameChains();
    });
  }

  it('commit of a version 2 image (emptied by discarding)', async () => {
    await chain(['-o', 'compat=0.10']);
    await expectSame(['commit', 'top.qcow2'], s);
    await sameChains();
  });

  it('-p ends at 100% before "Image committed."', async () => {
    await chain();
    const b = await blockemuImg(['commit', '-p', 'top.qcow2'], s.b);
    expect(b.code).toBe(0);
    expect(b.stdout.startsWith('    (0.00/100%)\r')).toBe(true);
    expect(b.stdout.endsWith('    (100.00/100%)\r\nImage committed.\n')).toBe(true);
  });

  it('refusals in qemu-img words, exit 1', async () => {
    await chain();
    for (const args of [
      ['commit'],
      ['commit', 'top.qcow2', 'x'],
      ['commit', 'base.qcow2'],
      ['commit', '-b', 'nope.qcow2', 'top.qcow2'],
      ['commit', '-r', 'abc', 'top.qcow2'],
      ['commit', '-r', '-5', 'top.qcow2'],
      ['commit', '-t', 'bogus', 'top.qcow2'],
      ['commit', '-x', 'top.qcow2'],
      ['commit', '-b'],
      ['commit', 'missing.qcow2'],
      ['commit', '-f', 'raw', 'base.qcow2'],
    ]) {
      await expectSame(args, s);
    }
  });
});
