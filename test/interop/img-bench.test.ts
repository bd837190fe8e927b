/**
 * `blockemu img bench` against `qemu-img bench` 7.2: the same command
 * lines, the same report lines (the measured time aside), stderr and exit
 * codes; a write benchmark leaves the same image behind (same map, same
 * contents, clean check).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu, type RunResult } from '../helpers/qemu.js';
import { blockemuImg, must, normalise, qemuImgIn, scratch } from './img-oracle.js';

const untimed = (r: RunResult): RunResult => ({ ...r, stdout: r.stdout.replace(/in \d+\.\d{3} seconds/, 'in T seconds') });

describe.skipIf(!qemu.available)('blockemu img bench (vs qemu-img bench)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    for (const d of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'b.qcow2', '16M'], d);
      await must('qemu-img', ['create', '-q', '-f', 'raw', 'r.img', '1M'], d);
    }
  });
  afterAll(() => s.done());

  const lines = [
    '-c 1000 b.qcow2',
    '-c 1000 -d 4 -s 64k -S 128k -o 1M b.qcow2',
    '-w -c 500 --pattern=0x55 -s 64k -f qcow2 b.qcow2',
    '-w -c 500 --flush-interval=100 -d 16 b.qcow2',
    '-w -c 500 --flush-interval=100 --no-drain -d 16 -t none -n b.qcow2',
    '-c 10 -o 1020k -s 8k -S 0 r.img',
    '-c x b.qcow2',
    '-d -1 b.qcow2',
    '--pattern=256 b.qcow2',
    '--flush-interval=10 b.qcow2',
    '-w --flush-interval=10 b.qcow2',
    '-s 3x b.qcow2',
    '-t bogus b.qcow2',
    '-i bogus b.qcow2',
    'b.qcow2 extra',
    'missing.qcow2',
  ];
  it('the same report lines, refusals and written image as qemu-img bench', async () => {
    for (const l of lines) {
      const args = ['bench', ...l.split(' ')];
      const b = untimed(normalise(await blockemuImg(args, s.b)));
      const q = untimed(await qemuImgIn(args, s.q));
      expect({ args, ...b }).toEqual({ args, ...q });
    }
    expect((await qemuImgIn(['map', '--output=json', 'b.qcow2'], s.b)).stdout).toBe((await qemuImgIn(['map', '--output=json', 'b.qcow2'], s.q)).stdout);
    expect((await qemuImgIn(['compare', `${s.b}/b.qcow2`, `${s.q}/b.qcow2`])).stdout).toBe('Images are identical.\n');
    expect((await qemuImgIn(['check', 'b.qcow2'], s.b)).code).toBe(0);
  });
});
