/**
 * `blockemu img rebase` against `qemu-img rebase` 7.2: the same chains
 * built by QEMU's tools in b/ and q/, the same command lines, the same
 * stdout (progress lines included), stderr and exit codes; afterwards the
 * overlays map the same (`qemu-img map`), read the same as before the
 * rebase (`qemu-img compare` against a copy of the old chain's contents),
 * and pass `qemu-img check`. A property test puts random data in the old
 * backing file, the new one and the overlay and checks that safe mode
 * never changes what the overlay reads.
 */
import { copyFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu, type RunResult } from '../helpers/qemu.js';
import { blockemuImg, expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

const mapOf = (r: RunResult) => r.stdout.replaceAll(/\S*\.qcow2/g, 'F');

describe.skipIf(!qemu.available)('blockemu img rebase (vs qemu-img rebase)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
  });
  afterAll(() => s.done());

  /** base <- mid <- top, and other.qcow2, in b/ and q/; then a raw copy of what top reads. */
  async function chain(): Promise<void> {
    for (const d of [s.b, s.q]) {
      for (const f of await readdir(d)) await rm(join(d, f));
      const img = (args: string[]) => must('qemu-img', args, d);
      const io = (f: string, ...c: string[]) => must('qemu-io', ['-f', 'qcow2', ...c.flatMap((x) => ['-c', x]), f], d);
      await img(['create', '-q', '-f', 'qcow2', 'base.qcow2', '6M']);
      await io('base.qcow2', 'write -P 1 0 3M', 'write -P 4 5M 512k');
      await img(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'mid.qcow2', '8M']);
      await io('mid.qcow2', 'write -P 2 1M 1M', 'write -z 2M 64k');
      await img(['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2', '8M']);
      await io('top.qcow2', 'write -P 3 512k 64k', 'write -P 3 7M 4k');
      await img(['create', '-q', '-f', 'qcow2', 'other.qcow2', '4M']);
      await io('other.qcow2', 'write -P 1 0 1M', 'write -P 9 3M 64k');
      await img(['convert', '-O', 'raw', 'top.qcow2', 'before.raw']);
    }
  }

  async function sameResult(): Promise<void> {
    const mb = await qemuImgIn(['map', 'top.qcow2'], s.b);
    const mq = await qemuImgIn(['map', 'top.qcow2'], s.q);
    expect(mapOf(mb)).toBe(mapOf(mq));
    expect((await qemuImgIn(['info', 'top.qcow2'], s.b)).stdout.replace(/disk size.*\n/, '')).toBe(
      (await qemuImgIn(['info', 'top.qcow2'], s.q)).stdout.replace(/disk size.*\n/, ''),
    );
    expect((await qemuImgIn(['compare', '-F', 'raw', 'top.qcow2', 'before.raw'], s.b)).stdout).toBe('Images are identical.\n');
    expect((await qemuImgIn(['check', 'top.qcow2'], s.b)).code).toBe(0);
  }

  const cases: [string, string[]][] = [
    ['onto an unrelated image, with progress', ['rebase', '-p', '-b', 'other.qcow2', '-F', 'qcow2', 'top.qcow2']],
    ['onto an image further down its chain', ['rebase', '-p', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2']],
    ['off its backing file (-b "")', ['rebase', '-p', '-b', '', 'top.qcow2']],
    ['quietly, cache modes given', ['rebase', '-q', '-t', 'none', '-T', 'writeback', '-f', 'qcow2', '-b', 'other.qcow2', '-F', 'qcow2', 'top.qcow2']],
  ];
  for (const [what, args] of cases) {
    it(`safe rebase ${what}: same output, same overlay, contents kept`, async () => {
      await chain();
      await expectSame(args, s);
      await sameResult();
    });
  }

  it('unsafe rebase (-u) only renames, even to a missing file', async () => {
    await chain();
    await expectSame(['rebase', '-u', '-b', 'gone.qcow2', '-F', 'qcow2', 'top.qcow2'], s);
    await expectSame(['info', 'top.qcow2'], s);
    await expectSame(['rebase', '-u', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2'], s);
    await sameResult();
    await expectSame(['rebase', '-u', '-b', '', 'top.qcow2'], s);
    await expectSame(['info', '--output=json', 'top.qcow2'], { b: s.b, q: s.b });
  });

  it('refusals in qemu-img words, exit 1', async () => {
    await chain();
    for (const args of [
      ['rebase', 'top.qcow2'],
      ['rebase', '-b', 'other.qcow2'],
      ['rebase', '-b', 'other.qcow2', 'top.qcow2', 'x'],
      ['rebase', '-b', 'other.qcow2', 'top.qcow2'],
      ['rebase', '-u', '-b', 'other.qcow2', 'top.qcow2'],
      ['rebase', '-b', 'nope.qcow2', '-F', 'qcow2', 'top.qcow2'],
      ['rebase', '-b', 'other.qcow2', '-F', 'qcow3', 'top.qcow2'],
      ['rebase', '-t', 'bogus', '-b', 'other.qcow2', 'top.qcow2'],
      ['rebase', '-T', 'bogus', '-b', 'other.qcow2', 'top.qcow2'],
      ['rebase', '-z', 'top.qcow2'],
      ['rebase', '-b'],
      ['rebase', '-b', 'other.qcow2', '-F', 'qcow2', 'missing.qcow2'],
    ]) {
      await expectSame(args, s);
    }
  });

  it('safe mode never changes what the overlay reads (random old backing, new backing, overlay)', async () => {
    const K = 64 * 1024;
    const write = fc.record({ at: fc.integer({ min: 0, max: 31 }), len: fc.integer({ min: 1, max: 4 }), pattern: fc.integer({ min: 0, max: 3 }), zero: fc.boolean() });
    const layer = fc.array(write, { maxLength: 5 });
    const dir = s.b;
    await fc.assert(
      fc.asyncProperty(layer, layer, layer, fc.constantFrom(1, 2, 3), fc.constantFrom(1024, 2304), async (oldW, newW, topW, newSizeM, oldSizeK) => {
        for (const f of await readdir(dir)) await rm(join(dir, f));
        const io = (f: string, ws: typeof oldW) =>
          ws.length ? must('qemu-io', ['-f', 'qcow2', ...ws.flatMap((w) => ['-c', `${w.zero ? 'write -z' : `write -P ${w.pattern}`} ${w.at * K} ${w.len * K}`]), f], dir) : Promise.resolve('');
        await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'old.qcow2', `${oldSizeK}k`], dir);
        await io('old.qcow2', oldW.filter((w) => (w.at + w.len) * K <= oldSizeK * 1024));
        await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'new.qcow2', `${newSizeM}M`], dir);
        await io('new.qcow2', newW.filter((w) => (w.at + w.len) * K <= newSizeM << 20));
        await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'old.qcow2', '-F', 'qcow2', 'top.qcow2', '2M'], dir);
        await io('top.qcow2', topW.filter((w) => (w.at + w.len) * K <= 2 << 20));
        await copyFile(join(dir, 'top.qcow2'), join(dir, 'top-before.qcow2'));
        const r = await blockemuImg(['rebase', '-b', 'new.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
        expect(r).toEqual({ stdout: '', stderr: '', code: 0 });
        const cmp = await qemuImgIn(['compare', 'top-before.qcow2', 'top.qcow2'], dir);
        expect(cmp.stdout).toBe('Images are identical.\n');
        expect((await qemuImgIn(['check', 'top.qcow2'], dir)).code).toBe(0);
      }),
      { numRuns: Number(process.env.REBASE_RUNS ?? 12) },
    );
  });
});
