/**
 * A quorum opened from options whose children name only their files
 * (`children.N.file.filename=X`, as iotest 030's -drive does): each child
 * is a data child, its format probed from the file as bdrv_open_child
 * probes it. `blockemu io --image-opts` against qemu-io 7.2.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('quorum children given by file name (vs qemu-io)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    for (const d of [s.b, s.q]) {
      for (const i of [0, 1]) {
        await must('qemu-img', ['create', '-q', '-f', 'qcow2', `c${i}.qcow2`, '1M'], d);
        await must('qemu-io', ['-c', 'write -q -P 7 0 64k', `c${i}.qcow2`], d);
      }
      await must('qemu-img', ['create', '-q', '-f', 'raw', 'c2.raw', '1M'], d);
      await must('qemu-io', ['-f', 'raw', '-c', 'write -q -P 7 0 64k', 'c2.raw'], d);
    }
  });
  afterAll(() => s.done());

  const children = 'children.0.file.filename=c0.qcow2,children.1.file.filename=c1.qcow2,children.2.file.filename=c2.raw';
  it.each([
    // qcow2 and raw children probed: the vote sees the guest data of each.
    [`driver=quorum,vote-threshold=3,${children}`, 'read -q -P 7 0 64k'],
    [`driver=quorum,vote-threshold=3,${children}`, 'read -q -P 0 64k 64k'],
    // A child whose file is missing fails the open with the file's error.
    ['driver=quorum,vote-threshold=1,children.0.file.filename=missing.qcow2', 'read -q 0 512'],
  ])('--image-opts %s, %s', async (opts, cmd) => {
    await expectSameIn('io', ['--image-opts', '-c', cmd, opts], s);
  });
});
