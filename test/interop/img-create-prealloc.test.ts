/**
 * `blockemu img create -o preallocation=…` against qemu-img 7.2: metadata
 * preallocation gives the same file byte for byte (the L2 table before the
 * clusters it maps, as preallocate_co allocates them) and the same map, and the refusals
 * are qemu-img's (stdout, stderr, exit code).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSame, expectSameIn, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('blockemu img create with preallocation (vs qemu-img create)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
  });
  afterAll(() => s.done());

  it.each([
    ['qcow2, 1 MiB', ['-o', 'preallocation=metadata'], '1M', 0],
    // With 4 KiB clusters qemu-img leaves the feature name table out of the header, blockemu does not (with or without preallocation): the header's extensions are not compared.
    ['qcow2, several L2 tables', ['-o', 'preallocation=metadata,cluster_size=4k'], '10M', 4096],
  ])('preallocation=metadata, %s: the same file', async (_name, opts, size, skipHeader) => {
    await expectSame(['create', '-f', 'qcow2', ...opts, 'p.qcow2', size], s);
    const [b, q] = await Promise.all([readFile(join(s.b, 'p.qcow2')), readFile(join(s.q, 'p.qcow2'))]);
    expect(b.length).toBe(q.length);
    expect(b.subarray(0, 104).equals(q.subarray(0, 104))).toBe(true);
    expect(b.subarray(skipHeader).equals(q.subarray(skipHeader))).toBe(true);
  });

  // The data clusters of such an image are holes in its file: block status looks below them (QEMU's
  // BDRV_BLOCK_RECURSE once qcow2_detect_metadata_preallocation said yes; SEEK_DATA/SEEK_HOLE through the lock
  // helper) and calls them zero, so `map` shows only what was written since, written zeroes included (the host
  // holds them as data); a zero cluster and a discarded one stay as QEMU shows them.
  it('map of a metadata-preallocated image: only the written clusters are data', async () => {
    await expectSame(['create', '-f', 'qcow2', '-o', 'preallocation=metadata,cluster_size=64k', 'm.qcow2', '64M'], s);
    const writes = ['write -q -P 7 0 192k', 'write -q -P 0 1M 64k', 'write -q -z 2M 128k', 'discard -q 3M 64k', 'write -q -P 9 40M 4k'].flatMap((c) => ['-c', c]);
    await expectSameIn('io', [...writes, 'm.qcow2'], s);
    await expectSame(['map', 'm.qcow2'], s);
    await expectSame(['map', '--output=json', 'm.qcow2'], s);
    // The same image read by the other tool: blockemu's map of qemu-img's image.
    await expectSame(['map', '--output=json', '../q/m.qcow2'], s);
    // The header and three runs: the pattern, the written zeroes, the 4 KiB at 40 MiB.
    expect((await expectSame(['map', 'm.qcow2'], s)).b.stdout.trim().split('\n')).toHaveLength(4);
  });

  it.each([
    ['raw metadata', ['-f', 'raw', '-o', 'preallocation=metadata']],
    ['an unknown mode (raw)', ['-f', 'raw', '-o', 'preallocation=bogus']],
    ['an unknown mode (qcow2)', ['-f', 'qcow2', '-o', 'preallocation=bogus']],
    ['with a backing file', ['-f', 'qcow2', '-o', 'preallocation=metadata', '-b', 'p.qcow2', '-F', 'qcow2']],
  ])('refuses %s as qemu-img does', async (_name, args) => {
    await expectSame(['create', ...args, 'x.img', '1M'], s);
  });
});
