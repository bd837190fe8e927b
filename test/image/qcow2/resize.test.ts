/**
 * Qcow2Image.resize: the L1 table moving as it grows (also past one
 * refcount block's range, with 512 B clusters), what a shrink frees, the
 * refusals in QEMU's words, and writes racing a resize. Images are judged
 * by qemu-img check where QEMU is installed; test/interop/img-resize.test.ts
 * compares whole command lines with qemu-img resize.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockError } from '../../../src/image/errors.js';
import { createImage, openImage } from '../../../src/image/open.js';
import { Qcow2Image } from '../../../src/image/qcow2/image.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../../helpers/qemu.js';

const opener = (p: string) => openImage(p, { readOnly: true });
const open = (path: string, opts: { persistentBitmaps?: boolean } = {}) => Qcow2Image.open(path, { openBackingImage: opener, ...opts });

async function expectClean(path: string): Promise<void> {
  if (!qemu.available) return;
  const check = await qemuImg('check', path);
  expect(check.stdout).toContain('No errors were found on the image.');
  expect(check.code).toBe(0);
}

/** The header's l1_size and l1_table_offset as on disk. */
async function l1Fields(path: string): Promise<{ size: number; offset: number }> {
  const head = await readFile(path);
  const v = new DataView(head.buffer, head.byteOffset, 48);
  return { size: v.getUint32(36), offset: Number(v.getBigUint64(40)) };
}

describe('qcow2 resize', () => {
  it('grows the L1 table into new clusters and frees the old one; data stays, the new area reads zeroes', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'g.qcow2');
      // 512 B clusters: one L2 table maps 32 KiB, one L1 cluster 2 MiB.
      await createImage(path, { format: 'qcow2', size: 1 << 20, clusterSize: 512 });
      const img = await open(path);
      await img.write(0, new Uint8Array(1 << 20).fill(0x3c));
      const before = await l1Fields(path);
      await img.resize(64 << 20);
      expect(img.size()).toBe(64 << 20);
      await img.write((64 << 20) - 512, new Uint8Array(512).fill(0x7e));
      expect((await img.read(0, 1 << 20)).every((b) => b === 0x3c)).toBe(true);
      expect((await img.read(1 << 20, 4096)).every((b) => b === 0)).toBe(true);
      await img.close();
      const after = await l1Fields(path);
      expect(after.size).toBe(2048);
      expect(after.offset).not.toBe(before.offset);
      await expectClean(path);
      if (qemu.available) {
        const io = await qemuIo('-c', 'read -P 0x3c 0 1M', '-c', 'read -P 0 1M 1M', '-c', `read -P 0x7e ${(64 << 20) - 512} 512`, path);
        expect(io.stdout).not.toContain('Pattern verification failed');
      }
    });
  });

  it('places an L1 table longer than a refcount block range after the last used cluster (512 B clusters, 64-bit refcounts)', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'big.qcow2');
      // 64-bit refcounts: a block counts 64 clusters; a 1 GiB image needs an L1 table of 512 clusters.
      await createImage(path, { format: 'qcow2', size: 1 << 20, clusterSize: 512, refcountBits: 64 });
      const img = await open(path);
      await img.write(4096, new Uint8Array(8192).fill(9));
      await img.resize(1 << 30);
      await img.write((1 << 30) - 4096, new Uint8Array(4096).fill(8));
      await img.close();
      expect((await l1Fields(path)).size).toBe(32768);
      await expectClean(path);
    });
  });

  it('shrinks: clusters and L2 tables past the end freed, the file cut short; growing again reads zeroes there', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 's.qcow2');
      await createImage(path, { format: 'qcow2', size: 8 << 20, clusterSize: 4096 });
      const img = await open(path);
      await img.write(0, new Uint8Array(8 << 20).fill(0x55));
      await img.flush();
      const full = (await stat(path)).size;
      await img.resize(1 << 20);
      expect(img.size()).toBe(1 << 20);
      await expect(img.read(1 << 20, 512)).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
      await img.close();
      expect((await stat(path)).size).toBeLessThan(full / 4);
      await expectClean(path);
      const again = await open(path);
      await again.resize(8 << 20);
      expect((await again.read(0, 1 << 20)).every((b) => b === 0x55)).toBe(true);
      expect((await again.read(1 << 20, 7 << 20)).every((b) => b === 0)).toBe(true);
      await again.close();
      await expectClean(path);
    });
  });

  it('keeps the bytes past an unaligned new end in the last cluster, as QEMU does', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'u.qcow2');
      await createImage(path, { format: 'qcow2', size: 1 << 20 });
      const img = await open(path);
      await img.write(0, new Uint8Array(1 << 20).fill(1));
      await img.resize(1536);
      await img.resize(65536 + 512);
      // The cluster that held the end keeps its data; the next one was discarded.
      expect((await img.read(1536, 512)).every((b) => b === 1)).toBe(true);
      expect((await img.read(65536, 512)).every((b) => b === 0)).toBe(true);
      await img.close();
      await expectClean(path);
    });
  });

  it("refuses what QEMU refuses, with QEMU's messages", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'r.qcow2');
      await createImage(path, { format: 'qcow2', size: 1 << 20, clusterSize: 512 });
      const img = await open(path);
      const fails = (size: number, opts = {}) => img.resize(size, opts).then(() => 'resized', (e: BlockError) => e.message);
      expect(await fails(1000)).toBe('The new size must be a multiple of 512');
      expect(await fails(-512)).toBe('Image size cannot be negative');
      expect(await fails(512, { preallocation: 'full' })).toBe("Preallocation can't be used for shrinking an image");
      // 512 B clusters: at most 32 MiB of L1 table, 128 GiB.
      expect(await fails(256 * 2 ** 30)).toBe('Failed to grow the L1 table: File too large');
      expect(img.size()).toBe(1 << 20);
      await img.close();
      const ro = await Qcow2Image.open(path, { openBackingImage: opener, readOnly: true });
      await expect(ro.resize(2 << 20)).rejects.toThrow('Image is read-only');
      await ro.close();
      await expectClean(path);
    });
  });

  it.skipIf(!qemu.available)('refuses a version 2 image with snapshots, and one whose bitmaps the caller does not hold', async () => {
    await withTempDir(async (dir) => {
      const v2 = join(dir, 'v2.qcow2');
      await createImage(v2, { format: 'qcow2', size: 1 << 20, compat: '0.10' });
      await qemuImg('snapshot', '-c', 's1', v2);
      const a = await open(v2);
      await expect(a.resize(2 << 20)).rejects.toThrow("Can't resize a v2 image which has snapshots");
      await a.close();

      const bm = join(dir, 'bm.qcow2');
      await createImage(bm, { format: 'qcow2', size: 1 << 20 });
      await qemuImg('bitmap', '--add', bm, 'b0');
      const b = await open(bm, { persistentBitmaps: true });
      await expect(b.resize(2 << 20)).rejects.toThrow('Cannot resize qcow2 with persistent bitmaps that were not loaded into memory');
      const inconsistent = { check: () => { throw new BlockError('INVALID_ARGUMENT', "Bitmap 'b0' is inconsistent and cannot be used"); } };
      await expect(b.resize(2 << 20, { heldBitmap: () => inconsistent })).rejects.toThrow("Bitmap 'b0' is inconsistent");
      await b.resize(2 << 20, { heldBitmap: () => ({ check: () => undefined }) });
      expect(b.size()).toBe(2 << 20);
      await b.close();
    });
  });

  it('makes writes wait: one queued behind a shrink past the new end fails, one inside it lands', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'c.qcow2');
      await createImage(path, { format: 'qcow2', size: 4 << 20, clusterSize: 4096 });
      const img = await open(path);
      await img.write(0, new Uint8Array(4 << 20).fill(2));
      const shrinking = img.resize(1 << 20);
      const outside = img.write(3 << 20, new Uint8Array(4096).fill(3));
      const inside = img.write(4096, new Uint8Array(4096).fill(4));
      await shrinking;
      await expect(outside).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
      await inside;
      expect((await img.read(4096, 4096)).every((b) => b === 4)).toBe(true);
      await img.close();
      await expectClean(path);
    });
  });
});
