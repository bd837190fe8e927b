import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { createHostFile } from '../../src/image/file-create.js';
import { HostFile } from '../../src/image/file.js';
import { withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;

async function sparseFile(path: string, size: number): Promise<void> {
  const fh = await open(path, 'w');
  await fh.truncate(size);
  await fh.close();
}

describe('file node write-zeroes', () => {
  it('keeps a fresh sparse file sparse, yet zeroes what was written, also after data was written', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 't.raw');
      await sparseFile(path, 4 * MiB);
      const g = new BlockGraph();
      const n = await openBlockdev(g, { driver: 'file', 'node-name': 'f', filename: path });
      await n.writeZeroes(0, 4 * MiB);
      expect((await n.imageInfo()).actualSize).toBe(0);
      await n.write(MiB + 100, new Uint8Array(5000).fill(7));
      await n.writeZeroes(MiB, 64 * 1024);
      expect((await n.read(MiB, 64 * 1024)).every((b) => b === 0)).toBe(true);
      // Zeroes over data in a chunk the fresh-file tracking knows was written, and in one it does not.
      await n.write(3 * MiB, new Uint8Array(4096).fill(9));
      await n.writeZeroes(3 * MiB + 1024, 1024);
      const back = await n.read(3 * MiB, 4096);
      expect(back.subarray(0, 1024).every((b) => b === 9)).toBe(true);
      expect(back.subarray(1024, 2048).every((b) => b === 0)).toBe(true);
      expect(back.subarray(2048).every((b) => b === 9)).toBe(true);
      await g.closeAll();
    });
  });

  it('on a file with data, checks what is there before skipping', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'd.raw');
      const fh = await open(path, 'w');
      await fh.write(new Uint8Array(2 * MiB).fill(5), 0, 2 * MiB, 0);
      await fh.close();
      const g = new BlockGraph();
      const n = await openBlockdev(g, { driver: 'file', 'node-name': 'f', filename: path });
      await n.writeZeroes(512 * 1024, 64 * 1024);
      expect((await n.read(512 * 1024, 64 * 1024)).every((b) => b === 0)).toBe(true);
      expect((await n.read(0, 4096)).every((b) => b === 5)).toBe(true);
      await g.closeAll();
    });
  });

  it('knows a file createHostFile made fresh, its allocated first block notwithstanding, until something touches it', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'c.raw');
      await createHostFile(path, 4 * MiB);
      const g = new BlockGraph();
      const n = await openBlockdev(g, { driver: 'file', 'node-name': 'f', filename: path });
      const reads = vi.spyOn(HostFile.prototype, 'readInto');
      try {
        await n.writeZeroes(0, 4 * MiB);
        expect(reads).not.toHaveBeenCalled();
      } finally {
        reads.mockRestore();
      }
      expect((await n.imageInfo()).actualSize).toBe(4096);
      await g.closeAll();

      // Written by someone else after creation: not fresh, and zeroes do reach the data.
      for (const offset of [0, 3 * MiB]) {
        await createHostFile(path, 4 * MiB);
        const fh = await open(path, 'r+');
        await fh.write(new Uint8Array(4096).fill(7), 0, 4096, offset);
        await fh.close();
        const g2 = new BlockGraph();
        const m = await openBlockdev(g2, { driver: 'file', 'node-name': 'f', filename: path });
        await m.writeZeroes(0, 4 * MiB);
        expect((await m.read(offset, 4096)).every((b) => b === 0), `data at ${offset}`).toBe(true);
        await g2.closeAll();
      }
    });
  });
});
