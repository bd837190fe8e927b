/**
 * `blockemu img convert` with an existing target (-n) and with several
 * sources (concatenated), against qemu-img 7.2 convert: the same output and
 * refusals, and targets qemu-img judges alike (compare, check, the same
 * allocation as qemu-img's own target). iotests 063 and 122 run these.
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

/** qemu-img map --output=json, host offsets dropped (they are the writer's choice). */
async function allocation(path: string): Promise<unknown> {
  const r = await qemuImgIn(['map', '--output=json', path]);
  expect(r.code).toBe(0);
  return (JSON.parse(r.stdout) as Array<Record<string, unknown>>).map(({ offset: _o, ...rest }) => rest);
}

describe.skipIf(!qemu.available)('blockemu img convert -n and several sources (vs qemu-img convert)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  const io = (f: string, ...c: string[]) => must('qemu-io', [...c.flatMap((x) => ['-c', x]), f], s.dir);
  const create = (dir: string, ...a: string[]) => must('qemu-img', ['create', '-q', ...a], dir);
  beforeAll(async () => {
    s = await scratch();
    for (const [i, p] of [[1, '0x11'], [2, '0x22'], [3, '0x33']] as const) {
      await create(s.dir, '-f', 'qcow2', `s${i}.qcow2`, '4M');
      await io(`s${i}.qcow2`, `write -P ${p} 0 64k`, `write -P ${p} 1M 100k`);
    }
    // Sizes that are not whole clusters of the target, so a compressed cluster spans two sources.
    await create(s.dir, '-f', 'qcow2', '-o', 'cluster_size=1024', 'm1.qcow2', '1023k');
    await create(s.dir, '-f', 'qcow2', '-o', 'cluster_size=1024', 'm2.qcow2', '1023k');
    await io('m1.qcow2', 'write -P 0x33 1022k 1k');
    await io('m2.qcow2', 'write -P 0x44 0 1k');
    await create(s.dir, '-f', 'raw', 'odd.raw', '1000');
    await io('odd.raw', 'write -P 9 0 1000');
    await create(s.dir, '-f', 'qcow2', 'big.qcow2', '64M');
    await io('big.qcow2', 'write -P 1 0 3M');
  });
  afterAll(() => s.done());

  /** Runs convert with both tools (targets in b/ and q/), then compares the targets. */
  async function both(args: string[], dst: string, fmt = 'qcow2'): Promise<void> {
    const { b } = await expectSame(['convert', ...args], s);
    expect(b.code).toBe(0);
    expect((await qemuImgIn(['compare', '-f', fmt, '-F', fmt, join(s.b, dst), join(s.q, dst)])).stdout).toBe('Images are identical.\n');
    if (fmt === 'qcow2') expect((await qemuImgIn(['check', join(s.b, dst)])).code).toBe(0);
    expect(await allocation(join(s.b, dst))).toEqual(await allocation(join(s.q, dst)));
  }

  it('concatenates several sources, plain and compressed', async () => {
    await both(['-O', 'qcow2', '../s1.qcow2', '../s2.qcow2', '../s3.qcow2', 'cat.qcow2'], 'cat.qcow2');
    await both(['-c', '-O', 'qcow2', '../s1.qcow2', '../s2.qcow2', '../s3.qcow2', 'catc.qcow2'], 'catc.qcow2');
    await both(['-c', '-O', 'qcow2', '../m1.qcow2', '../m2.qcow2', 'mis.qcow2'], 'mis.qcow2');
    await both(['-O', 'raw', '../odd.raw', '../s1.qcow2', 'odd-cat.raw'], 'odd-cat.raw', 'raw');
  });

  it('refuses a backing file for concatenated sources, as qemu-img does', async () => {
    await expectSame(['convert', '-O', 'qcow2', '-B', '../s1.qcow2', '-F', 'qcow2', '../s1.qcow2', '../s2.qcow2', 'x.qcow2'], s);
    await expectSame(['convert', '-O', 'qcow2', '-c', '-B', '../s1.qcow2', '../s1.qcow2', '../s2.qcow2', 'x.qcow2'], s);
  });

  it('-n writes into an existing target: non-zero data is overwritten, an empty one stays sparse', async () => {
    for (const d of [s.b, s.q]) {
      await create(d, '-f', 'qcow2', 'dirty.qcow2', '64M');
      await must('qemu-io', ['-c', 'write -P 42 0 64k', '-c', 'write -P 42 10M 64k', 'dirty.qcow2'], d);
      await create(d, '-f', 'qcow2', '-o', 'compat=0.10', 'v2.qcow2', '64M');
      await create(d, '-f', 'raw', 'empty.raw', '64M');
    }
    await both(['-n', '-O', 'qcow2', '../big.qcow2', 'dirty.qcow2'], 'dirty.qcow2');
    expect((await qemuImgIn(['compare', join(s.b, 'dirty.qcow2'), join(s.dir, 'big.qcow2')])).code).toBe(0);
    await both(['-n', '-O', 'qcow2', '../big.qcow2', 'v2.qcow2'], 'v2.qcow2');
    // A raw target: the same bytes (Node cannot punch holes, so its zeroes are written where qemu-img's are punched).
    await expectSame(['convert', '-n', '-O', 'raw', '../big.qcow2', 'empty.raw'], s);
    expect((await qemuImgIn(['compare', '-f', 'raw', '-F', 'raw', join(s.b, 'empty.raw'), join(s.q, 'empty.raw')])).code).toBe(0);
  });

  it('-n refusals: no target, a smaller target, -o given', async () => {
    for (const d of [s.b, s.q]) await create(d, '-f', 'qcow2', 'small.qcow2', '2M');
    await expectSame(['convert', '-n', '-O', 'qcow2', '../big.qcow2', 'missing.qcow2'], s);
    await expectSame(['convert', '-n', '-O', 'qcow2', '../big.qcow2', 'small.qcow2'], s);
    await expectSame(['convert', '-n', '-O', 'qcow2', '-o', 'cluster_size=4k', '../big.qcow2', 'small.qcow2'], s);
  });

  it('-c -S 0 writes every cluster, zeroes too, compressed', async () => {
    await both(['-c', '-S', '0', '-O', 'qcow2', '../big.qcow2', 'allc.qcow2'], 'allc.qcow2');
  });

  it('-n -c into a target with data: the compressed write to an allocated cluster fails, as in qemu-img', async () => {
    for (const d of [s.b, s.q]) await copyFile(join(s.dir, 'big.qcow2'), join(d, 'again.qcow2'));
    const { b } = await expectSame(['convert', '-n', '-c', '-O', 'qcow2', '../s1.qcow2', 'again.qcow2'], s);
    expect(b.code).toBe(1);
    expect((await qemuImgIn(['check', join(s.b, 'again.qcow2')])).code).toBe(0);
    expect((await qemuImgIn(['compare', join(s.b, 'again.qcow2'), join(s.q, 'again.qcow2')])).code).toBe(0);
  });
});
