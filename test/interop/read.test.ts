/**
 * Images made by QEMU's tools read identically through blockemu: each one is
 * read whole through openImage (qcow2 metadata, compressed clusters, zero
 * flags, backing chains), written out as a raw file, and qemu-img compare
 * must call the two identical; block status must agree with qemu-img map on
 * what is data and what reads as zeroes.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import { qemu } from '../helpers/qemu.js';
import { must, qemuImgIn, scratch } from './img-oracle.js';

const WRITES = ['write -P 1 0 100k', 'write -P 2 1M 64k', 'write -z 2M 1M', 'write -P 3 5242368 1k', 'write -P 4 7M 3M', 'discard 8M 64k'];

describe.skipIf(!qemu.available)('images written by QEMU read identically through blockemu', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  const q = (...a: string[]) => must('qemu-img', a, s.dir);
  const io = (...a: string[]) => must('qemu-io', a, s.dir);
  const made = async (name: string, opts: string[], writes = WRITES) => {
    await q('create', '-q', '-f', 'qcow2', ...opts, name, '12M');
    await io(...writes.flatMap((w) => ['-c', w]), name);
    return name;
  };

  beforeAll(async () => {
    s = await scratch();
    await made('c512.qcow2', ['-o', 'cluster_size=512']);
    await made('c2m.qcow2', ['-o', 'cluster_size=2M']);
    await made('v2.qcow2', ['-o', 'compat=0.10,cluster_size=4k']);
    await made('rc1.qcow2', ['-o', 'refcount_bits=1']);
    await made('rc64.qcow2', ['-o', 'refcount_bits=64,cluster_size=1k']);
    // Compressed: qemu-img convert -c from a raw file with compressible and incompressible runs.
    await q('create', '-q', '-f', 'raw', 'src.raw', '12M');
    await io('-f', 'raw', '-c', 'write -P 7 0 2M', '-c', 'write -P 9 3M 100k', 'src.raw');
    await q('convert', '-c', '-O', 'qcow2', 'src.raw', 'comp.qcow2');
    await q('convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4k', 'src.raw', 'comp4k.qcow2');
    // A chain: raw <- qcow2 (512 B) <- qcow2 (2 MiB) <- qcow2 (64 KiB, longer than its backing file).
    await q('create', '-q', '-f', 'raw', 'base.raw', '6M');
    await io('-f', 'raw', '-c', 'write -P 0x11 0 6M', 'base.raw');
    await q('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', '-o', 'cluster_size=512', 'mid1.qcow2');
    await io('-c', 'write -P 0x22 4k 1k', '-c', 'write -z 1M 8k', 'mid1.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'mid1.qcow2', '-F', 'qcow2', '-o', 'cluster_size=2M', 'mid2.qcow2');
    await io('-c', 'write -P 0x33 2097252 10', '-c', 'discard 4M 2M', 'mid2.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'mid2.qcow2', '-F', 'qcow2', 'top.qcow2', '10M');
    await io('-c', 'write -P 0x44 5M 2M', '-c', 'write -z 0 64k', 'top.qcow2');
  }, 60_000);
  afterAll(() => s.done());

  it.each(['c512.qcow2', 'c2m.qcow2', 'v2.qcow2', 'rc1.qcow2', 'rc64.qcow2', 'comp.qcow2', 'comp4k.qcow2', 'top.qcow2'])('%s', async (name) => {
    const path = join(s.dir, name);
    const img = await openImage(path, { readOnly: true });
    const out = join(s.dir, `${name}.raw`);
    const fh = await open(out, 'w');
    let zeroBytes = 0;
    try {
      const step = 1 << 20;
      for (let off = 0; off < img.size(); off += step) {
        const data = await img.read(off, Math.min(step, img.size() - off));
        await fh.write(data, 0, data.length, off);
      }
      for (let off = 0; off < img.size(); ) {
        const e = await img.blockStatus(off, img.size() - off);
        expect(e.length).toBeGreaterThan(0);
        if (e.zero) zeroBytes += e.length;
        off += e.length;
      }
    } finally {
      await fh.close();
      await img.close();
    }
    const cmp = await qemuImgIn(['compare', '-F', 'raw', path, out]);
    expect(cmp.stdout + cmp.stderr).toBe('Images are identical.\n');
    // qemu-img map's view of what reads as zeroes must match ours byte for byte.
    const map = JSON.parse((await qemuImgIn(['map', '--output=json', path])).stdout) as Array<{ length: number; zero: boolean }>;
    expect(zeroBytes).toBe(map.filter((m) => m.zero).reduce((n, m) => n + m.length, 0));
  });
});
