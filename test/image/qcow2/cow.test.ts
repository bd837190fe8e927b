import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { stat } from 'node:fs/promises';
import { createImage, openImage } from '../../../src/image/open.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../../helpers/qemu.js';

/** Copy-on-write of partial writes into new clusters: zeroes from the shared chunk, old data where there was some. */
describe('qcow2 partial writes into new clusters', () => {
  const cs = 65536;

  it('writes the zero head and tail of a new cluster, so qemu-img map sees whole data clusters as qemu writes them', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'p.qcow2');
      await createImage(path, { format: 'qcow2', size: 64 * cs, clusterSize: cs });
      const img = await openImage(path);
      const data = new Uint8Array(4096).fill(0xa5);
      for (const c of [5, 9, 2]) await img.write(c * cs + 8192, data);
      const out = new Uint8Array(cs);
      for (const c of [5, 9, 2]) {
        await img.readInto(out, c * cs);
        expect(out.subarray(0, 8192).every((x) => x === 0)).toBe(true);
        expect(out.subarray(8192, 12288).every((x) => x === 0xa5)).toBe(true);
        expect(out.subarray(12288).every((x) => x === 0)).toBe(true);
      }
      await img.close();
      // Not left as holes (or cut short at the end of the file): qemu-img map would report those as zero.
      expect((await stat(path)).size % cs).toBe(0);
      if (qemu.available) {
        const map = JSON.parse((await qemuImg('map', '--output=json', path)).stdout) as Array<{ start: number; length: number; data: boolean; zero: boolean }>;
        const data2 = map.find((e) => e.start === 2 * cs);
        expect(data2).toMatchObject({ length: cs, data: true, zero: false });
        const check = await qemuImg('check', path);
        expect(check.stdout).toContain('No errors were found on the image.');
      }
    });
  });

  it('writes zeroes around the data when the new cluster reuses freed space that held data', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'r.qcow2');
      await createImage(path, { format: 'qcow2', size: 64 * cs, clusterSize: cs });
      const img = await openImage(path);
      await img.write(0, new Uint8Array(cs).fill(0xee));
      await img.write(cs, new Uint8Array(cs).fill(0x11));
      await img.discard(0, cs);
      // The flush applies the free: the next allocation reuses guest cluster 0's old host cluster.
      await img.flush();
      await img.write(7 * cs + 100, new Uint8Array(100).fill(0x77));
      const ext = await img.blockStatus(7 * cs, cs);
      expect(ext.hostOffset).toBeLessThan((await stat(path)).size - cs);
      const out = await img.read(7 * cs, cs);
      expect(out.subarray(0, 100).every((x) => x === 0)).toBe(true);
      expect(out.subarray(100, 200).every((x) => x === 0x77)).toBe(true);
      expect(out.subarray(200).every((x) => x === 0)).toBe(true);
      await img.close();
      if (qemu.available) {
        const io = await qemuIo('-f', 'qcow2', '-c', `read -P 0 ${7 * cs} 100`, '-c', `read -P 0 ${7 * cs + 200} ${cs - 200}`, path);
        expect(io.stdout).not.toContain('Pattern verification failed');
      }
    });
  });
});
