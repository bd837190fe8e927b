/**
 * `blockemu img measure` against `qemu-img measure` 7.2: sizes given with
 * --size and images given by name (raw, qcow2 sparse, with zero clusters,
 * with persistent bitmaps), every output format and option the raw and
 * qcow2 drivers measure, and the refusals: the same stdout, stderr and
 * exit code for each command line.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSame, must, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('blockemu img measure (vs qemu-img measure)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    const img = (...a: string[]) => must('qemu-img', a, s.dir);
    const io = (fmt: string, f: string, ...c: string[]) => must('qemu-io', ['-f', fmt, ...c.flatMap((x) => ['-c', x]), f], s.dir);
    await img('create', '-q', '-f', 'raw', 'odd.img', '1000');
    await io('raw', 'odd.img', 'write -P 1 0 512');
    await img('create', '-q', '-f', 'qcow2', 'sparse.qcow2', '100M');
    // Whole clusters: a partly written one leaves a hole in the file, which QEMU's block status sees and blockemu's does not (img map differs there too).
    await io('qcow2', 'sparse.qcow2', 'write -P 1 1M 64k', 'write -P 2 50M 1M', 'write -z 60M 1M', 'write -c -P 3 70M 128k');
    await img('create', '-q', '-f', 'qcow2', '-b', 'sparse.qcow2', '-F', 'qcow2', 'over.qcow2');
    await io('qcow2', 'over.qcow2', 'write -P 4 80M 64k');
    await img('create', '-q', '-f', 'qcow2', 'bitmaps.qcow2', '8M');
    await img('bitmap', '--add', 'bitmaps.qcow2', 'b0');
    await img('bitmap', '--add', '-g', '4k', 'bitmaps.qcow2', 'a-longer-name');
  });
  afterAll(() => s.done());

  const lines = [
    '--size 1G',
    '--size 1G -O qcow2',
    '--size 1G -O qcow2 --output=json',
    '--size 1000 -O raw -o preallocation=full',
    '--size 100T -O qcow2 -o cluster_size=512',
    '--size 20T -O qcow2 -o refcount_bits=64',
    '--size 3G -O qcow2 -o refcount_bits=1,cluster_size=512',
    '--size 1G -O qcow2 -o extended_l2=on',
    '--size 1G -O qcow2 -o extended_l2=on,preallocation=full',
    '--size 1M -O qcow2 -o compat=0.10,lazy_refcounts=on',
    '--size 1M -O qcow2 -o compression_type=zstd,preallocation=metadata',
    '-O qcow2 odd.img',
    '-O raw odd.img',
    '-O qcow2 sparse.qcow2',
    '-O qcow2 --output=json sparse.qcow2',
    '-O qcow2 -o cluster_size=4k sparse.qcow2',
    '-O qcow2 -o cluster_size=2M sparse.qcow2',
    '-O qcow2 -o backing_file=x sparse.qcow2',
    '-O qcow2 -o compat=0.10 sparse.qcow2',
    '-O qcow2 -o preallocation=falloc sparse.qcow2',
    '-O raw -f qcow2 sparse.qcow2',
    '-O qcow2 over.qcow2',
    '-O qcow2 bitmaps.qcow2',
    '-O qcow2 --output=json -U bitmaps.qcow2',
    // refusals
    '',
    'a b',
    '-f qcow2',
    '--size 1G sparse.qcow2',
    '--size 1x',
    '--size 1G --output=xml',
    '--size 1G -O foo',
    '--size 1G -O vmdk',
    '--size 1G -O qcow2 -o foo=bar',
    '--size 1G -O qcow2 -o cluster_size=3k',
    '--size 1M -O qcow2 -o compat=2',
    '--size 1M -O qcow2 -o compat=0.10,refcount_bits=8',
    '--size 1M -O qcow2 -o extended_l2=on,cluster_size=4k',
    '--size 1M -O qcow2 -o preallocation=bogus',
    '--size 1M -O qcow2 -o refcount_bits=3',
    '-l snap sparse.qcow2',
    '-O qcow2 missing.qcow2',
  ];
  // One test per command line: each is two tool runs, and 41 of them together outlast a test's timeout on a busy machine.
  for (const l of lines) {
    it(`measure ${l}: the same answer or refusal as qemu-img measure`, async () => {
      await expectSame(['measure', ...l.split(' ').filter((x) => x !== '')], s.dir);
    });
  }
});
