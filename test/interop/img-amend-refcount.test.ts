/**
 * `blockemu img amend -o refcount_bits=N` against qemu-img 7.2 amend: the
 * refcount structure rebuilt at the new width (same file layout, same
 * check results, same progress lines, including the step back when one
 * more walk is needed), its refusals (a refcount that does not fit, compat
 * 0.10), and refcount_bits values qemu-img's number parser takes (iotest
 * 112 runs these).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { blockemuImg, expectSame, must, normalise, qemuImgIn, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('blockemu img amend refcount_bits (vs qemu-img amend)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
  });
  afterAll(() => s.done());

  /** The same command with both tools on their own copies, then the images compared as qemu-img sees them. */
  async function amendBoth(args: string[], img: string): Promise<void> {
    await expectSame(['amend', ...args, img], s);
    const look = async (d: string) => {
      const check = await qemuImgIn(['check', img], d);
      const map = await qemuImgIn(['map', '--output=json', img], d);
      const info = JSON.parse((await qemuImgIn(['info', '--output=json', img], d)).stdout) as Record<string, unknown>;
      return { check, map: map.stdout, spec: info['format-specific'] };
    };
    const b = await look(s.b);
    expect(b.check.code).toBe(0);
    expect(b).toEqual(await look(s.q));
  }

  async function fresh(name: string, create: string[] = []): Promise<void> {
    for (const d of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', ...create, name, '16M'], d);
      await must('qemu-io', ['-c', 'write 4M 8M', name], d);
    }
  }

  it('goes from 16 to 1 to 64 bits, as qemu-img does', async () => {
    await fresh('t.qcow2');
    await amendBoth(['-o', 'refcount_bits=1'], 't.qcow2');
    await amendBoth(['-o', 'refcount_bits=64'], 't.qcow2');
  });

  it('back to 16 bits with compat=0.10, and the refusals on the way', async () => {
    await fresh('v.qcow2', ['-o', 'refcount_bits=64']);
    await amendBoth(['-o', 'compat=0.10'], 'v.qcow2');
    await amendBoth(['-o', 'compat=0.10,refcount_bits=16'], 'v.qcow2');
    await amendBoth(['-o', 'compat=1.1'], 'v.qcow2');
    await amendBoth(['-o', 'refcount_bits=32,compat=0.10'], 'v.qcow2');
  });

  it('refuses a width too narrow for a refcount, and takes one wide enough', async () => {
    for (const d of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'snap.qcow2', '64M'], d);
      await must('qemu-io', ['-c', 'write 0 1M', 'snap.qcow2'], d);
      await must('qemu-img', ['snapshot', '-c', 'foo', 'snap.qcow2'], d);
    }
    await amendBoth(['-o', 'refcount_bits=1'], 'snap.qcow2');
    await amendBoth(['-o', 'refcount_bits=2'], 'snap.qcow2');
  });

  it('prints the same progress when the allocations take an extra walk', async () => {
    for (const d of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=1,cluster_size=512', 'walks.qcow2', '64k'], d);
      await must('qemu-io', ['-c', `write 0 ${58 * 512}`, 'walks.qcow2'], d);
    }
    await amendBoth(['-p', '-o', 'refcount_bits=64'], 'walks.qcow2');
    const b = await blockemuImg(['info', 'walks.qcow2'], s.b);
    expect(b.stdout).toContain('refcount bits: 64');
  });

  it.each(['0', '-1', '-0x10', '128', '42', '18446744073709551615', '18446744073709551616', '1x'])('create -o refcount_bits=%s: as qemu-img', async (v) => {
    const args = ['create', '-f', 'qcow2', '-o', `refcount_bits=${v}`, join(s.dir, 'c.qcow2'), '64M'];
    expect(normalise(await blockemuImg(args))).toEqual(await qemuImgIn(args));
  });
});
