/**
 * A blkdebug node's `align` makes an unaligned write read-modify-write, as
 * QEMU's generic layer does (request-padding.ts): the blocks around it are
 * read and written whole. Played through `blockemu io` and qemu-io on the
 * same images.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blockemu, qemu, qemuIo, QEMU_IO_TIMING, withTempDir } from '../helpers/qemu.js';

const blkdebug = (file: string, rules: object[] = []) =>
  `json:${JSON.stringify({ driver: 'raw', file: { driver: 'blkdebug', align: 4096, ...(rules.length ? { 'inject-error': rules } : {}), image: { driver: 'file', filename: file } } })}`;
const clean = (s: string) => s.replace(QEMU_IO_TIMING, '$1TIME');

describe.skipIf(!qemu.available)("blkdebug's align: read-modify-write of unaligned writes", () => {
  it('keeps the bytes around the write, and sends the write down as whole blocks (a write rule on the block fails it), as qemu-io', () =>
    withTempDir(async (dir) => {
      const outcome = async (tool: 'blockemu' | 'qemu') => {
        const img = join(dir, `${tool}.raw`);
        await writeFile(img, Buffer.alloc(16384, 0xaa));
        const io = (...args: string[]) => (tool === 'blockemu' ? blockemu('io', ...args) : qemuIo(...args));
        const write = await io('-c', 'write -P 0x55 1024 512', blkdebug(img));
        // sector 0 lies in the padded block only: the write fails when the block goes down whole.
        const ruled = await io('-c', 'write -P 0x66 5120 512', blkdebug(img, [{ event: 'pwritev', iotype: 'write', sector: 8, errno: 5 }]));
        const read = await io('-c', 'read -P 0xaa 0 1024', '-c', 'read -P 0x55 1024 512', '-c', 'read -P 0xaa 1536 14848', img);
        return { write: clean(write.stdout), ruled: clean(ruled.stdout + ruled.stderr), read: clean(read.stdout) };
      };
      const [ours, theirs] = [await outcome('blockemu'), await outcome('qemu')];
      expect(ours).toEqual(theirs);
      expect(ours.ruled).toMatch(/write failed: Input\/output error/);
      expect(ours.read).not.toMatch(/Pattern verification failed/);
    }));

  it('fails the write when reading the blocks around it fails (QEMU 7.2 writes them anyway)', () =>
    withTempDir(async (dir) => {
      const img = join(dir, 'b.raw');
      await writeFile(img, Buffer.alloc(8192, 0xaa));
      const r = await blockemu('io', '-c', 'write -P 0x55 1024 512', blkdebug(img, [{ event: 'pwritev_rmw_head', iotype: 'read', errno: 5 }]));
      expect(r.stdout + r.stderr).toMatch(/write failed: Input\/output error/);
      const read = await blockemu('io', '-c', 'read -P 0xaa 0 8192', img);
      expect(read.stdout).not.toMatch(/Pattern verification failed/);
    }));
});
