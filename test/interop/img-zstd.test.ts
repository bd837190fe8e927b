/**
 * qcow2 images with compression type zstd, against qemu-img and qemu-io
 * 7.2 (built with zstd, as Debian's is): each step through both tools,
 * outputs compared; then each tool reads and checks the other's images.
 * QEMU's compressed clusters must read back through blockemu, and
 * blockemu's through QEMU.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { qemu, run, runBlockemu } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

/** 4 MiB of what disks hold: text, zeroes, random bytes, a table of records, one-byte runs. */
function mixedDisk(): Buffer {
  const b = Buffer.alloc(4 << 20);
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16;
  for (let p = 0; p < b.length; ) {
    const len = Math.min(b.length - p, 1000 + (rnd() % 90000));
    const kind = rnd() % 5;
    if (kind === 0) b.write('The qcow2 image format: clusters, L1 and L2 tables, refcounts. '.repeat(Math.ceil(len / 64)).slice(0, len), p);
    else if (kind === 1) for (let i = 0; i < len; i++) b[p + i] = rnd() & 0xff;
    else if (kind === 2) for (let i = 0; i < len; i += 16) b.writeUInt32LE((i * 2654435761) >>> 0, p + i - (i % 16));
    else if (kind === 3) b.fill(rnd() & 0xff, p, p + len);
    p += len;
  }
  return b;
}

describe.skipIf(!qemu.available)('qcow2 with compression type zstd (vs qemu-img and qemu-io)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeEach(async () => {
    s = await scratch();
  });
  afterEach(() => s.done());

  it('creates, writes compressed clusters and reads them as qemu-io does, each tool reading the other\'s image', async () => {
    await expectSameIn('img', ['create', '-f', 'qcow2', '-o', 'compression_type=zstd', 'z.qcow2', '4M'], s);
    for (const cmd of ['write -q -c -P 0xAB 0 64k', 'write -q -c -P 0xAC 64k 64k', 'write -q -c -P 0xAD 1M 64k'])
      await expectSameIn('io', ['-c', cmd, 'z.qcow2'], s);
    for (const [mine, theirs] of [[s.b, s.q], [s.q, s.b]] as const) {
      // Each tool's image, read by the other tool.
      await expectSameIn('io', ['-c', 'read -q -P 0xAB 0 64k', '-c', 'read -q -P 0xAC 64k 64k', '-c', 'read -q -P 0xAD 1M 64k', '-c', 'read -v -q 131070 8', join(theirs, 'z.qcow2')], { b: mine, q: mine });
      await expectSameIn('img', ['check', join(theirs, 'z.qcow2')], { b: mine, q: mine });
    }
    await expectSameIn('img', ['map', '--output=json', 'z.qcow2'], s);
    const info = JSON.parse((await runBlockemu(['img', 'info', '--output=json', 'z.qcow2'], { cwd: s.b })).stdout);
    expect(info['format-specific']['data']['compression-type']).toBe('zstd');
  });

  it('converts with -c to zstd and back; the contents compare equal across tools', async () => {
    await writeFile(join(s.dir, 'src.raw'), mixedDisk());
    await expectSameIn('img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', '../src.raw', 'c.qcow2'], s);
    for (const dir of [s.b, s.q]) {
      await must('qemu-img', ['check', 'c.qcow2'], dir);
      await must('qemu-img', ['compare', '../src.raw', 'c.qcow2'], dir);
      const r = await runBlockemu(['img', 'compare', '../src.raw', 'c.qcow2'], { cwd: dir });
      expect(r).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    }
    // Out of each tool's zstd image into zlib and raw, by blockemu.
    await expectSameIn('img', ['convert', '-c', '-O', 'qcow2', join(s.q, 'c.qcow2'), 'zlib.qcow2'], s);
    await expectSameIn('img', ['convert', '-O', 'raw', join(s.q, 'c.qcow2'), 'back.raw'], s);
    await must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', join(s.dir, 'src.raw'), join(s.b, 'back.raw')], s.b);
  });

  it('refuses zstd in a version 2 image, and downgrades to version 2 only without compressed clusters', async () => {
    await expectSameIn('img', ['create', '-f', 'qcow2', '-o', 'compat=0.10,compression_type=zstd', 'v2.qcow2', '1M'], s);
    await expectSameIn('img', ['create', '-f', 'qcow2', '-o', 'compression_type=zstd', 'a.qcow2', '1M'], s);
    await expectSameIn('io', ['-c', 'write -q -P 1 0 64k', 'a.qcow2'], s);
    await expectSameIn('img', ['amend', '-o', 'compat=0.10', 'a.qcow2'], s);
    await expectSameIn('img', ['create', '-f', 'qcow2', '-o', 'compression_type=zstd', 'b.qcow2', '1M'], s);
    await expectSameIn('io', ['-c', 'write -q -c -P 1 0 64k', 'b.qcow2'], s);
    await expectSameIn('img', ['amend', '-o', 'compat=0.10', 'b.qcow2'], s);
    for (const dir of [s.b, s.q]) {
      const info = (name: string) => run('qemu-img', ['info', '--output=json', name], { cwd: dir }).then((r) => JSON.parse(r.stdout)['format-specific']['data']);
      expect(await info('a.qcow2')).toMatchObject({ compat: '0.10', 'compression-type': 'zlib' });
      expect(await info('b.qcow2')).toMatchObject({ compat: '1.1', 'compression-type': 'zstd' });
    }
  });
});
