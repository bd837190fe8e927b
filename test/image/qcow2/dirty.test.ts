import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openImage } from '../../../src/image/open.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../../helpers/qemu.js';

/** Sets the dirty bit (incompatible feature bit 0) and bumps one refcount to make a leak, as a crash with lazy refcounts can leave. */
async function makeDirtyWithLeak(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const hdr = Buffer.alloc(104);
    await fh.read(hdr, 0, 104, 0);
    hdr.writeBigUInt64BE(hdr.readBigUInt64BE(72) | 1n, 72);
    await fh.write(hdr, 0, 104, 0);
    // The refcount of cluster 0 (the header) is in the first refcount block: 1 -> 2 makes a leak.
    const reftable = Number(hdr.readBigUInt64BE(48));
    const e = Buffer.alloc(8);
    await fh.read(e, 0, 8, reftable);
    const block = Number(e.readBigUInt64BE(0));
    await fh.write(Buffer.from([0, 2]), 0, 2, block);
  } finally {
    await fh.close();
  }
}

describe.skipIf(!qemu.available)('qcow2 dirty bit', () => {
  it('a read-write open repairs the refcounts and clears the bit; data is kept', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'd.qcow2');
      await qemuImg('create', '-f', 'qcow2', path, '4M');
      await qemuIo('-c', 'write -P 5 0 128k', path);
      await makeDirtyWithLeak(path);
      expect((await qemuImg('check', path)).code).toBe(3); // leaks only

      // Read-only: opened as is, nothing written.
      const ro = await openImage(path, { readOnly: true });
      expect((await ro.info()).dirtyFlag).toBe(true);
      await ro.close();

      const img = await openImage(path);
      expect((await img.info()).dirtyFlag).toBe(false);
      await img.write(1 << 20, new Uint8Array(4096).fill(6));
      await img.close();
      const check = await qemuImg('check', path);
      expect(check.stdout).toContain('No errors were found on the image.');
      const io = await qemuIo('-c', 'read -P 5 0 128k', '-c', 'read -P 6 1M 4k', path);
      expect(io.stdout).not.toContain('Pattern verification failed');
    });
  });
});
