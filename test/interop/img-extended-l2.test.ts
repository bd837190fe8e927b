/**
 * qcow2 images with extended L2 entries (subclusters), against qemu-img and
 * qemu-io 7.2 (iotest 271's cases): each step runs through both tools in a
 * directory of its own, outputs compared; then the L2 tables the two wrote
 * must be the same bytes (entries and subcluster bitmaps), each tool checks
 * the other's image, and their contents compare equal.
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { qemu, run } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

const same = expectSameIn;
/** Where QEMU and blockemu put the first L2 table of a fresh image with 64 KiB clusters. */
const L2_OFFSET = 0x40000;

/** The first `n` extended L2 entries (16 bytes each) of an image's active L2 table for its first L1 entry. */
async function l2Entries(path: string, n: number): Promise<string[]> {
  const f = await open(path, 'r');
  try {
    const header = Buffer.alloc(48);
    await f.read(header, 0, 48, 0);
    const l1 = Buffer.alloc(8);
    await f.read(l1, 0, 8, Number(header.readBigUInt64BE(40)));
    const l2Offset = Number(l1.readBigUInt64BE(0) & 0x00fffffffffffe00n);
    const buf = Buffer.alloc(n * 16);
    if (l2Offset !== 0) await f.read(buf, 0, buf.length, l2Offset);
    return Array.from({ length: n }, (_, i) => buf.subarray(i * 16, i * 16 + 16).toString('hex'));
  } finally {
    await f.close();
  }
}

describe.skipIf(!qemu.available)('qcow2 with extended L2 entries (vs qemu-img and qemu-io)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeEach(async () => {
    s = await scratch();
  });
  afterEach(() => s.done());

  /** The tables are the same bytes (`entries` of them; 0: not compared), each tool finds the other's image clean, and the two read the same. */
  async function crossCheck(name: string, entries: number): Promise<void> {
    if (entries > 0) expect(await l2Entries(join(s.b, name), entries)).toEqual(await l2Entries(join(s.q, name), entries));
    expect((await run('qemu-img', ['check', name], { cwd: s.b })).code).toBe(0);
    await same('img', ['check', name], s);
    await must('qemu-img', ['compare', join(s.b, name), join(s.q, name)], s.q);
  }

  for (const backing of [true, false]) {
    it(`subcluster writes, zeroes, discards and compressed clusters${backing ? ' over a backing file' : ''} (iotest 271)`, async () => {
      if (backing) {
        await same('img', ['create', '-f', 'raw', 't.base', '2M'], s);
        await same('io', ['-f', 'raw', '-c', 'write -q -P 0xff 0 2M', 't.base'], s);
        await same('img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', '-F', 'raw', '-b', 't.base', 't.qcow2', '2M'], s);
      } else {
        await same('img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', 't.qcow2', '2M'], s);
      }
      const steps = [
        'write -q -P 1 0 1k', // part of subcluster 0: the rest of it copied
        'write -q -P 2 3k 512', // inside subcluster 1, in place in the cluster
        'write -q -P 3 7k 4k', // across subclusters 3-5
        'write -q -P 4 62k 4k', // across clusters 0 and 1
        'write -q -z 16k 8k', // whole subclusters zeroed in metadata
        'write -q -z 33k 1k', // part of a subcluster: zeroes written or the bit set, as the rest reads
        'write -q -z -u 128k 64k', // a whole unallocated cluster
        'write -q -P 5 192k 128k',
        'write -q -z -u 192k 32k', // half a cluster with unmap
        'write -q -z -u 256k 64k', // a whole allocated cluster unmapped
        'discard -q 224k 32k', // part of a cluster: nothing
        'discard -q 64k 64k', // a whole cluster
        'write -q -c -P 6 384k 64k',
        'write -q -c -P 7 448k 64k',
        'write -q -z 400k 64k', // across a compressed cluster's half: written as data
        'write -q -P 8 513k 1k', // next to the compressed clusters
        'write -q -z 1983k 65k', // to the end
      ];
      for (const step of steps) await same('io', ['-c', step, 't.qcow2'], s);
      await same('io', ['-c', 'read -q -P 1 0 1k', '-c', 'read -q -P 4 62k 4k', '-c', 'read -q -P 0 128k 64k', 't.qcow2'], s);
      await same('img', ['map', '--output=json', 't.qcow2'], s);
      // Not `info`: where QEMU punches a hole for an unmapped cluster blockemu leaves its bytes, so actual-size differs.
      await crossCheck('t.qcow2', 32);
    });
  }

  it('copy-on-write from clusters an internal snapshot shares, and concurrent subcluster writes (iotest 271)', async () => {
    await same('img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', 't.qcow2', '1M'], s);
    const fill = Array.from({ length: 10 }, (_, c) => ['-c', `write -q -P ${c + 1} ${c * 64 + 14}k 2k`, '-c', `write -q -z ${c * 64 + 28}k 2k`]).flat();
    await same('io', [...fill, 't.qcow2'], s);
    await same('img', ['snapshot', '-c', 'snap1', 't.qcow2'], s);
    const cow = Array.from({ length: 10 }, (_, c) => ['-c', `write -q -P 0x${(c + 10).toString(16)} ${c * 64 + 4 * c}k ${4 + c}k`]).flat();
    await same('io', [...cow, 't.qcow2'], s);
    await same('img', ['snapshot', '-d', 'snap1', 't.qcow2'], s);
    await same('io', ['-c', 'aio_write -q -P 0x31 30k 2k', '-c', 'aio_write -q -P 0x32 20k 12k', '-c', 'aio_flush', 't.qcow2'], s);
    await crossCheck('t.qcow2', 12);
  });

  it('reads the images QEMU writes, and QEMU reads blockemu’s', async () => {
    await must('qemu-img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=32k', join(s.dir, 'q.qcow2'), '4M'], s.dir);
    await must('qemu-io', ['-c', 'write -P 0x5a 1k 3k', '-c', 'write -z 8k 1k', '-c', 'write -c -P 0x77 96k 32k', '-c', 'write -P 0x33 200k 300k', join(s.dir, 'q.qcow2')], s.dir);
    const reads = ['-c', 'read -q -P 0 0 1k', '-c', 'read -q -P 0x5a 1k 3k', '-c', 'read -q -P 0 4k 92k', '-c', 'read -q -P 0x77 96k 32k', '-c', 'read -q -P 0x33 200k 300k', '../q.qcow2'];
    await same('io', reads, s);
    await same('img', ['map', '--output=json', '../q.qcow2'], s);
    await same('img', ['convert', '-O', 'qcow2', '-o', 'extended_l2=on', '../q.qcow2', 'c.qcow2'], s);
    await same('io', [...reads.slice(0, -1), 'c.qcow2'], s);
    expect(await readFile(join(s.b, 'c.qcow2'))).toEqual(await readFile(join(s.q, 'c.qcow2')));
  });

  it("creation, resize, measure and amend: QEMU's options, refusals and results (iotest 271)", async () => {
    await same('img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=8k', 't.qcow2', '1M'], s);
    await same('img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on,compat=0.10', 't.qcow2', '1M'], s);
    await same('img', ['measure', '--size', '64G', '-O', 'qcow2', '-o', 'cluster_size=16k,extended_l2=on'], s);
    await same('img', ['create', '-f', 'raw', 't.base', '1M'], s);
    await same('io', ['-f', 'raw', '-c', 'write -q -P 0xff 0 1M', 't.base'], s);
    for (const prealloc of ['metadata', 'falloc']) {
      await same('img', ['create', '-f', 'qcow2', '-o', `extended_l2=on,preallocation=${prealloc}`, '-F', 'raw', '-b', 't.base', 't.qcow2', '512k'], s);
      await same('img', ['resize', 't.qcow2', '1M'], s);
      await same('io', ['-c', 'read -q -P 0xff 0 512k', '-c', 'read -q -P 0 512k 512k', 't.qcow2'], s);
      await same('img', ['map', '--output=json', 't.qcow2'], s);
      // falloc: QEMU moves the refcount table first (qcow2_refcount_area), blockemu does not, so host offsets differ.
      await crossCheck('t.qcow2', prealloc === 'metadata' ? 16 : 0);
    }
    await same('img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', '-F', 'raw', '-b', 't.base', 'r.qcow2', '503k'], s);
    await same('img', ['info', 'r.qcow2'], s);
    await same('img', ['resize', '--preallocation=metadata', 'r.qcow2', '1013k'], s);
    await same('io', ['-c', 'read -q -P 0xff 0 503k', '-c', 'read -q -P 0 503k 510k', 'r.qcow2'], s);
    await same('img', ['amend', '-o', 'extended_l2=off', 'r.qcow2'], s);
    await same('img', ['amend', '-o', 'compat=0.10', 'r.qcow2'], s);
    await crossCheck('r.qcow2', 16);
  });

  it("check's findings on corrupt subcluster bitmaps, and the I/O errors (iotest 271)", async () => {
    for (const dir of [s.b, s.q]) {
      await must('qemu-img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', join(dir, 't.qcow2'), '1M'], dir);
      await must('qemu-io', ['-c', 'write -q 32k 128k', '-c', 'write -q -c 192k 64k', join(dir, 't.qcow2')], dir);
      const f = await open(join(dir, 't.qcow2'), 'r+');
      // Entry 1: subcluster 0 both allocated and zero; entry 3 (compressed): a bitmap; entry 4 (unallocated): an allocated subcluster.
      await f.write(Buffer.from([0, 0, 0, 1]), 0, 4, L2_OFFSET + 16 + 8);
      await f.write(Buffer.from([0x80]), 0, 1, L2_OFFSET + 3 * 16 + 12);
      await f.write(Buffer.from([1]), 0, 1, L2_OFFSET + 4 * 16 + 15);
      await f.close();
    }
    await same('img', ['check', 't.qcow2'], s);
    await same('io', ['-c', 'read -q 256k 1k', 't.qcow2'], s);
    await same('io', ['-c', 'read -q 0 192k', 't.qcow2'], s);
    await same('io', ['-c', 'write -q 0 192k', 't.qcow2'], s);
  });
});
