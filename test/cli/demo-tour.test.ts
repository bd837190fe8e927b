import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runImageTour } from '../../src/cli/demo-tour.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

describe('blockemu demo --tour', () => {
  it('runs every step and leaves images that read back what it wrote', async () => {
    await withTempDir(async (dir) => {
      let out = '';
      let err = '';
      const code = await runImageTour({ out: (t) => void (out += t), err: (t) => void (err += t) }, dir);
      expect(err).toBe('');
      expect(code).toBe(0);
      expect(out).toContain('No errors were found on the image.');
      expect(out).toContain('Images are identical.');
      expect(out).not.toContain('Pattern verification failed');
      if (!qemu.available) return;
      // QEMU's own tools agree with what the demo printed.
      const top = join(dir, 'top.qcow2');
      expect((await qemuImg('check', top)).code).toBe(0);
      const io = await qemuIo('-c', 'read -P 0xaa 0 4k', '-c', 'read -P 0xcc 512k 4k', '-c', 'read -P 0 8M 64k', top);
      expect(io.stdout).not.toContain('Pattern verification failed');
      expect((await qemuImg('compare', top, join(dir, 'flat.qcow2'))).stdout).toBe('Images are identical.\n');
    });
  });
});
