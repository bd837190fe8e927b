/**
 * qcow2's runtime options (cache sizes, overlap checks, lazy refcounts,
 * cache-clean-interval) against qemu-io and qemu-img 7.2 (iotests 103 and
 * 137): checked at open as at reopen with QEMU's words, sizes with their
 * suffixes, a reopen's new options joined with the old ones as
 * qcow2_join_options joins them, and accepted by `img --image-opts`.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('qcow2 runtime options (vs qemu-io and qemu-img)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    for (const d of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 't.qcow2', '64M'], d);
      await must('qemu-io', ['-c', 'write -q -P 42 0 64k', 't.qcow2'], d);
    }
  });
  afterAll(() => s.done());

  it.each([
    'cache-size=1.25M,l2-cache-size=1M,refcount-cache-size=0.25M',
    'cache-size=1M,l2-cache-size=2M',
    'cache-size=1M,refcount-cache-size=2M',
    'cache-size=0,l2-cache-size=0,refcount-cache-size=0',
    'l2-cache-entry-size=256',
    'l2-cache-entry-size=4242',
    'l2-cache-entry-size=128k',
    'cache-size=1Q',
    'cache-size=0',
    'cache-size=2M,l2-cache-size=1M',
    'l2-cache-size=1M,refcount-cache-size=0.25M',
    'l2-cache-entry-size=16k',
    'lazy-refcounts=42',
    'overlap-check=blubb',
    'overlap-check=constant,overlap-check.template=all',
    'cache-clean-interval=-1',
    'cache-clean-interval=abc',
  ])('open -o %s', async (opts) => {
    await expectSameIn('io', ['-c', `open -o ${opts} t.qcow2`, '-c', 'read -q -P 42 0 64k'], s);
  });

  it('a reopen keeps the old options its new ones do not replace, as qcow2_join_options does', async () => {
    const steps = [
      'reopen -o overlap-check=constant',
      'reopen -o overlap-check.template=all',
      'reopen -o overlap-check.main-header=on',
      'reopen -o cache-size=1M',
      'reopen -o l2-cache-size=512k',
      'reopen -o refcount-cache-size=128k',
      'reopen -o lazy-refcounts=42',
      'reopen -o cache-size=1Q',
      'reopen -o cache-clean-interval=-1',
      'reopen -o cache-size=1M,l2-cache-size=64k,refcount-cache-size=64k',
    ];
    await expectSameIn('io', [...steps.flatMap((c) => ['-c', c]), '-c', 'read -q -P 42 0 64k', 't.qcow2'], s);
  });

  it('img takes them in --image-opts, checked against the image', async () => {
    await expectSameIn('img', ['info', '--image-opts', 'driver=qcow2,file.filename=t.qcow2,l2-cache-entry-size=4096'], s);
    await expectSameIn('img', ['info', '--image-opts', 'driver=qcow2,file.filename=t.qcow2,l2-cache-entry-size=300'], s);
    await expectSameIn('img', ['amend', '-o', 'compat=0.10', '--image-opts', 'driver=qcow2,file.filename=t.qcow2,l2-cache-entry-size=4096'], s);
    await expectSameIn('img', ['map', '--output=json', '--image-opts', 'driver=qcow2,file.filename=t.qcow2,cache-size=1M,l2-cache-size=2M'], s);
  });
});
