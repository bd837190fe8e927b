/**
 * `blockemu img convert -l` (an internal snapshot of the source) against
 * qemu-img 7.2: the same command lines in b/ and q/; output and exit code
 * equal, and each target holds what the snapshot held (qemu-img compare
 * against qemu-img's target), not what the image holds now.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { qemu } from '../helpers/qemu.js';
import { expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('blockemu img convert -l (vs qemu-img convert)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    const q = (...a: string[]) => must('qemu-img', a, s.dir);
    const io = (...a: string[]) => must('qemu-io', a, s.dir);
    await q('create', '-q', '-f', 'qcow2', 'snap.qcow2', '4M');
    await io('-c', 'write -P 1 0 1M', 'snap.qcow2');
    await q('snapshot', '-c', 'one', 'snap.qcow2');
    await io('-c', 'write -P 2 512k 1M', 'snap.qcow2');
    await q('snapshot', '-c', 'two', 'snap.qcow2');
    // A snapshot whose name is another's id: tried as an id first.
    await io('-c', 'write -P 3 2M 64k', 'snap.qcow2');
    await q('snapshot', '-c', '1', 'snap.qcow2');
    await io('-c', 'write -P 4 0 4M', 'snap.qcow2');
    await q('create', '-q', '-f', 'raw', 'r.raw', '1M');
  }, 60_000);
  afterAll(() => s.done());

  it.each([
    ['one'],
    ['two'],
    ['1'],
    ['3'],
    ['snapshot.name=two'],
    ['snapshot.id=2'],
    ['snapshot.id=2,snapshot.name=two'],
  ])('copies snapshot %s as qemu-img does', async (param) => {
    const dst = `out-${param.replace(/[^a-z0-9]/g, '_')}.raw`;
    const { b } = await expectSame(['convert', '-l', param, '-O', 'raw', '../snap.qcow2', dst], s);
    expect(b.code).toBe(0);
    expect((await qemuImgIn(['compare', '-f', 'raw', '-F', 'raw', join(s.b, dst), join(s.q, dst)])).stdout).toBe('Images are identical.\n');
  });

  it('the snapshot, not the image as it is now', async () => {
    await expectSame(['convert', '-l', 'one', '-O', 'qcow2', '../snap.qcow2', 'one.qcow2'], s);
    const r = await qemuImgIn(['compare', join(s.b, 'one.qcow2'), join(s.dir, 'snap.qcow2')]);
    expect(r.stdout).toMatch(/^Content mismatch/);
  });

  it.each([
    [['-l', 'nope', '../snap.qcow2', 'x']],
    [['-l', 'snapshot.id=2,snapshot.name=one', '../snap.qcow2', 'x']],
    [['-l', 'snapshot.size=2', '../snap.qcow2', 'x']],
    [['-l', 'snapshot.id=9', '../snap.qcow2', 'x']],
    [['-l', 'one', '../snap.qcow2', '../snap.qcow2', 'x']],
    [['-l', 'one', '../r.raw', 'x']],
    [['-l', 'one', '-f', 'raw', '../r.raw', 'x']],
  ])('fails like qemu-img: %j', async (args) => {
    const { b } = await expectSame(['convert', ...args], s);
    expect(b.code).not.toBe(0);
  });
});
