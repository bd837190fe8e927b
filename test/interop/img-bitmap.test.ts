/**
 * `blockemu img bitmap` against `qemu-img bitmap` 7.2: the same command
 * lines in two directories holding the same images give the same output,
 * exit codes and stored bitmaps (names, flags, granularities, and bits as
 * qemu-storage-daemon loads them); the images pass `qemu-img check`.
 * qemu-img names the image's node "#blockNNN" in some messages, with a
 * number that differs run to run: that number is the one thing masked.
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bitmapView, withDaemon } from '../helpers/bitmap-daemon.js';
import { qemu, type RunResult } from '../helpers/qemu.js';
import { blockemuImg, must, normalise, qemuImgIn, scratch } from './img-oracle.js';

const mask = (r: RunResult) => ({ ...r, stderr: r.stderr.replace(/#block\d+/g, '#blockN') });

describe.skipIf(!qemu.available || !qemu.storageDaemon)('blockemu img bitmap (vs qemu-img bitmap)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    for (const d of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'g.qcow2', '4M'], d);
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', 'v2.qcow2', '4M'], d);
      await must('qemu-img', ['create', '-q', '-f', 'raw', 'r.raw', '4M'], d);
      // A bitmap with bits: 'a' records two writes.
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'data.qcow2', '4M'], d);
      await must('qemu-img', ['bitmap', '--add', 'data.qcow2', 'a'], d);
      await must('qemu-io', ['-f', 'qcow2', '-c', 'write 0 64k', '-c', 'write 1M 192k', 'data.qcow2'], d);
      await copyFile(join(d, 'data.qcow2'), join(d, 'other.qcow2'));
    }
  });
  afterAll(() => s.done());

  const same = async (args: string[]) => {
    const b = mask(normalise(await blockemuImg(['bitmap', ...args], s.b)));
    const q = mask(await qemuImgIn(['bitmap', ...args], s.q));
    expect({ args, ...b }).toEqual({ args, ...q });
    return q;
  };

  it.each([
    [['--add', 'r.raw', 'x']],
    [['--add', '-f', 'raw', 'r.raw', 'x']],
    [['--add', 'v2.qcow2', 'x']],
    [['--add', 'g.qcow2', 'b']],
    [['--add', 'g.qcow2', 'b']],
    [['--remove', 'g.qcow2', 'nope']],
    [['--add', '-g', '1000', 'g.qcow2', 'c']],
    [['--add', '-g', 'x', 'g.qcow2', 'c']],
    [['--clear', '-g', '64k', 'g.qcow2', 'b']],
    [['g.qcow2', 'b']],
    [['--add', 'g.qcow2']],
    [['--merge', 'b', '-b', 'nope.qcow2', 'g.qcow2', 'c']],
    [['--add', '--merge', 'b', '-F', 'raw', 'g.qcow2', 'c']],
    [['--add', '--merge', 'nope', 'g.qcow2', 'd']],
    [['--add', '-g', '128k', '--disable', 'g.qcow2', 'e']],
    [['--add', '--granularity', '2M', 'g.qcow2', 'f']],
    [['--add', '--granularity', '3k', 'g.qcow2', 'f']],
    [['--enable', '--disable', '--enable', 'g.qcow2', 'e']],
    [['--remove', 'g.qcow2', 'b']],
  ])('says what qemu-img says: %j', async (args) => {
    await same(args);
  });

  it('leaves the same bitmaps, with the same bits, in a clean image', async () => {
    await same(['--add', 'data.qcow2', 'm']);
    await same(['--merge', 'a', 'data.qcow2', 'm']);
    await same(['--add', '-g', '512k', 'data.qcow2', 'coarse']);
    await same(['--merge', 'a', '-b', 'other.qcow2', '-F', 'qcow2', 'data.qcow2', 'coarse']);
    await same(['--clear', '--disable', 'data.qcow2', 'a']);
    for (const img of ['g.qcow2', 'data.qcow2']) {
      expect((await qemuImgIn(['check', img], s.b)).code).toBe(0);
      const info = async (d: string) => JSON.parse((await qemuImgIn(['info', '--output=json', img], d)).stdout) as Record<string, unknown>;
      expect((await info(s.b))['format-specific']).toEqual((await info(s.q))['format-specific']);
    }
    const b = await withDaemon('qsd', join(s.b, 'data.qcow2'), bitmapView);
    const q = await withDaemon('qsd', join(s.q, 'data.qcow2'), bitmapView);
    expect(b).toEqual(q);
    // m got a's four clusters; the coarse one rounds them out to two 512 KiB granules; a was cleared.
    expect(b.dirty).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'm', count: 4 * 65536 }),
        expect.objectContaining({ name: 'coarse', count: 2 * 524288 }),
        expect.objectContaining({ name: 'a', count: 0, recording: false }),
      ]),
    );
  });
});
