/**
 * Raw images resized as QEMU's file-posix resizes a regular file: exact
 * lengths, sparse growth, zeroes written for falloc and full, and its
 * refusals.
 */
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RawImage } from '../../src/image/raw.js';
import { withTempDir } from '../helpers/qemu.js';

describe('raw resize', () => {
  it('gives the file exactly the new length, growing sparsely and cutting data off when shrinking', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.raw');
      await writeFile(path, new Uint8Array(1000).fill(7));
      const img = await RawImage.open(path);
      // Counted in whole sectors, as qemu-img counts it; the file itself is exactly as long as asked.
      expect(img.size()).toBe(1024);
      await img.resize(1537);
      expect(img.size()).toBe(2048);
      expect((await stat(path)).size).toBe(1537);
      expect((await img.read(990, 20)).join(',')).toBe([...Array(10).fill(7), ...Array(10).fill(0)].join(','));
      expect((await img.read(1530, 518)).every((b) => b === 0)).toBe(true);
      await img.resize(10);
      expect((await stat(path)).size).toBe(10);
      await img.resize(4 << 20);
      expect((await stat(path)).blocks * 512).toBeLessThan(1 << 20);
      await img.close();
    });
  });

  it('writes the new bytes for falloc and full (Node has no fallocate), never for shrinking', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'p.raw');
      await writeFile(path, new Uint8Array(0));
      const img = await RawImage.open(path);
      await img.resize(2 << 20, { preallocation: 'full' });
      expect((await stat(path)).blocks * 512).toBeGreaterThanOrEqual(2 << 20);
      await img.resize(4 << 20, { preallocation: 'falloc' });
      expect((await stat(path)).blocks * 512).toBeGreaterThanOrEqual(4 << 20);
      await expect(img.resize(1 << 20, { preallocation: 'full' })).rejects.toThrow('Cannot use preallocation for shrinking files');
      await expect(img.resize(8 << 20, { preallocation: 'metadata' })).rejects.toThrow('Unsupported preallocation mode: metadata');
      expect(img.size()).toBe(4 << 20);
      expect((await stat(path)).size).toBe(4 << 20);
      await img.close();
      const ro = await RawImage.open(path, { readOnly: true });
      await expect(ro.resize(1 << 20)).rejects.toThrow('Image is read-only');
      await ro.close();
    });
  });
});
