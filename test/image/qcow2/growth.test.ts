import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createImage, openImage } from '../../../src/image/open.js';
import { Qcow2Image } from '../../../src/image/qcow2/image.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../../helpers/qemu.js';

const opener = (p: string) => openImage(p, { readOnly: true });

describe.skipIf(!qemu.available)('qcow2 metadata growth', () => {
  it('grows the refcount table (512 B clusters, 64-bit refcounts) and stays valid for qemu-img', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'g.qcow2');
      await createImage(path, { format: 'qcow2', size: 8 << 20, clusterSize: 512, refcountBits: 64 });
      // Tiny caches force dirty L2 tables and refcount blocks out mid-write.
      const img = await Qcow2Image.open(path, { openBackingImage: opener, l2CacheBytes: 2048, refcountCacheBytes: 2048 });
      const chunk = new Uint8Array(64 * 1024);
      for (let off = 0; off < 8 << 20; off += chunk.length) {
        chunk.fill((off >> 16) & 0xff || 1);
        await img.write(off, chunk);
      }
      await img.close();
      const check = await qemuImg('check', path);
      expect(check.stdout).toContain('No errors were found on the image.');
      // qemu-io verifies the content: each 64 KiB run holds its own byte.
      const io = await qemuIo('-f', 'qcow2', '-c', 'read -P 0x01 0 64k', '-c', 'read -P 0x7f 0x7f0000 64k', path);
      expect(io.stdout).not.toContain('Pattern verification failed');
      expect(io.code).toBe(0);
      const info = JSON.parse((await qemuImg('info', '--output=json', path)).stdout);
      expect(info['virtual-size']).toBe(8 << 20);
    });
  });

  it('rewrites the header with the moved refcount table (a bitmap stored after the table grew)', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'h.qcow2');
      await createImage(path, { format: 'qcow2', size: 16 << 20, clusterSize: 512 });
      const img = await Qcow2Image.open(path, { openBackingImage: opener, persistentBitmaps: true });
      // 512 B clusters, 16-bit refcounts: one refcount table cluster covers 8 MiB of file, so 12 MiB of data moves it.
      const chunk = new Uint8Array(1 << 20).fill(0x5a);
      for (let off = 0; off < 12 << 20; off += chunk.length) await img.write(off, chunk);
      await img.flush();
      // Storing a bitmap rewrites cluster 0 from the image's header: it must name the table where it is now.
      await img.bitmaps.store([{ name: 'b0', granularity: 65536, enabled: true, data: new Uint8Array(32) }]);
      await img.close();
      const check = await qemuImg('check', path);
      expect(check.stdout).toContain('No errors were found on the image.');
      expect(check.code).toBe(0);
    });
  });

  it('keeps a backing chain readable through three levels (qcow2 over qcow2 over raw)', async () => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-f', 'raw', join(dir, 'base.raw'), '1M');
      await qemuIo('-f', 'raw', '-c', 'write -P 0x11 0 1M', join(dir, 'base.raw'));
      await createImage(join(dir, 'mid.qcow2'), { format: 'qcow2', backingFile: 'base.raw', backingFormat: 'raw', clusterSize: 4096 });
      const mid = await openImage(join(dir, 'mid.qcow2'));
      await mid.write(4096, new Uint8Array(100).fill(0x22));
      await mid.close();
      await createImage(join(dir, 'top.qcow2'), { format: 'qcow2', backingFile: 'mid.qcow2', backingFormat: 'qcow2' });
      const top = await openImage(join(dir, 'top.qcow2'));
      await top.write(8192 + 10, new Uint8Array(10).fill(0x33));
      await top.close();
      for (const f of ['mid.qcow2', 'top.qcow2']) expect((await qemuImg('check', join(dir, f))).code).toBe(0);
      const io = await qemuIo(
        '-c', 'read -P 0x11 0 4096', '-c', 'read -P 0x22 4096 100', '-c', 'read -P 0x11 4196 3996',
        '-c', 'read -P 0x11 8192 10', '-c', 'read -P 0x33 8202 10', '-c', 'read -P 0x11 8212 100',
        join(dir, 'top.qcow2'),
      );
      expect(io.stdout).not.toContain('Pattern verification failed');
    });
  });
});
