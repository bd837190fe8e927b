import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createImage, openImage } from '../../../src/image/open.js';
import { Qcow2Image } from '../../../src/image/qcow2/image.js';
import { withTempDir } from '../../helpers/qemu.js';

describe('qcow2 read paths', () => {
  it('does not serve a freed and reused compressed stream from the decompression cache', async () => {
    // Found by the model test: the second stream lands at the first one's
    // offset once the flush has applied the free, and must be read afresh.
    await withTempDir(async (dir) => {
      const path = join(dir, 'c.qcow2');
      await createImage(path, { format: 'qcow2', size: 512, clusterSize: 512 });
      const img = (await openImage(path)) as Qcow2Image;
      try {
        const a = new Uint8Array(512).fill(0x11);
        const b = new Uint8Array(512).fill(0x22);
        await img.writeCompressed(0, a);
        expect((await img.read(0, 512))[0]).toBe(0x11);
        await img.write(0, new Uint8Array(1));
        await img.flush();
        await img.writeCompressed(0, b);
        expect(Buffer.from(await img.read(0, 512)).equals(Buffer.from(b))).toBe(true);
      } finally {
        await img.close();
      }
    });
  });

  it('reads a request spanning fragmented, zero and unallocated runs into one buffer', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'f.qcow2');
      const cs = 4096;
      await createImage(path, { format: 'qcow2', size: 16 * cs, clusterSize: cs });
      const img = await openImage(path);
      try {
        // Clusters written back to front are not contiguous on the host.
        for (let c = 7; c >= 0; c--) await img.write(c * cs, new Uint8Array(cs).fill(c + 1));
        await img.writeZeroes(2 * cs, cs);
        const out = new Uint8Array(12 * cs).fill(0xee);
        await img.readInto(out, 0);
        for (let c = 0; c < 12; c++) {
          const want = c === 2 || c >= 8 ? 0 : c + 1;
          expect(out.subarray(c * cs, (c + 1) * cs).every((x) => x === want)).toBe(true);
        }
      } finally {
        await img.close();
      }
    });
  });
});
