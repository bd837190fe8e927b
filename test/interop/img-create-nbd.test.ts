/**
 * `img create` onto an NBD export (bdrv_img_create over the nbd protocol,
 * iotest 259): the export is opened, not created (it must be large enough;
 * its first sector zeroed), a qcow2 image is laid out on it, and a
 * preallocation that would grow it is refused in the NBD driver's words.
 * The same command lines run through blockemu and qemu-img, each on its
 * own export served by qemu-nbd.
 */
import { writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { startQemuNbd } from '../helpers/nbd-servers.js';
import { blockemu, qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

describe.skipIf(!qemu.available)('img create on an NBD export (vs qemu-img)', () => {
  it('qcow2 and raw, preallocation refused, a size the export cannot hold, and what info and check then say', () =>
    withTempDir(async (dir) => {
      const session = async (tool: 'blockemu' | 'qemu') => {
        const image = `${tool}.raw`;
        await writeFile(`${dir}/${image}`, Buffer.alloc(64 << 20, 0xaa));
        const server = await startQemuNbd(dir, image, { socket: `${tool}.sock` });
        const img = (...args: string[]) => (tool === 'blockemu' ? blockemu('img', ...args) : qemuImg(...args));
        const log: string[] = [];
        try {
          for (const args of [
            ['create', '-f', 'qcow2', server.uri, '64M'],
            ['info', server.uri],
            ['check', server.uri],
            ['create', '-f', 'qcow2', '-o', 'preallocation=metadata', server.uri, '64M'],
            ['create', '-f', 'raw', '-o', 'preallocation=falloc', server.uri, '64M'],
            ['create', '-f', 'raw', server.uri, '128M'],
            ['create', '-f', 'raw', server.uri, '32M'],
            ['info', '-f', 'raw', server.uri],
          ]) {
            const r = await img(...args);
            log.push(`$ ${args[0]} ${args.slice(1, -1).join(' ')}`, `${r.code}`, r.stdout, r.stderr.replace(/^(blockemu img|qemu-img): /gm, 'PROG: '));
          }
        } finally {
          await server.stop();
        }
        return log.join('\n').replaceAll(server.uri, 'URI');
      };
      const theirs = await session('qemu');
      const ours = await session('blockemu');
      expect(ours).toEqual(theirs);
      expect(ours).toContain('Could not resize image: Cannot grow NBD nodes');
      expect(ours).toContain('file format: qcow2');
    }));
});
