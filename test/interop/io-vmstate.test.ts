/**
 * qemu-io's `write -b` and `read -b`, the VM state area, with `blockemu io`
 * against qemu-io 7.2: the same commands on identical images in two
 * directories; output, exit code and the image files themselves (qcow2
 * keeps the area past the disk in its own clusters, its L1 table grown as
 * QEMU grows it) must be equal. A raw image has no such area: ENOTSUP.
 */
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normaliseQemuIo, qemu, qemuImg, run, withTempDir, runBlockemu } from '../helpers/qemu.js';

const CASES: Array<{ name: string; create: string[]; commands: string[] }> = [
  {
    name: 'qcow2: data written, read back with its pattern, zeroes where nothing was, far past the disk',
    create: ['-f', 'qcow2', 'img', '1M'],
    commands: ['write -b -P 7 0 64k', 'read -b -P 7 0 64k', 'read -b -P 0 64k 64k', 'write -b -P 9 1G 4k', 'read -b -P 9 1G 4k', 'read -b -P 7 1G 4k', 'read -P 0 0 1M'],
  },
  {
    name: 'qcow2 with small clusters: the L1 table grows several times',
    create: ['-f', 'qcow2', '-o', 'cluster_size=1024', 'img', '16M'],
    commands: ['write -b -P 1 0 4M', 'read -b -P 1 1M 1k', 'write -b -P 2 512 1k', 'read -b -v 0 2k'],
  },
  {
    name: 'alignment and flag refusals',
    create: ['-f', 'qcow2', 'img', '1M'],
    commands: ['write -b 100 512', 'read -b 0 100', 'write -b -z 0 512', 'write -b -f 0 512'],
  },
  { name: 'raw has no VM state area', create: ['-f', 'raw', 'img', '1M'], commands: ['write -b 0 512', 'read -b 0 512'] },
];

describe.skipIf(!qemu.available)('blockemu io write -b / read -b (vs qemu-io)', () => {
  it.each(CASES)('$name', async ({ create, commands }) => {
    await withTempDir(async (dir) => {
      await mkdir(join(dir, 'q'));
      await mkdir(join(dir, 'b'));
      expect((await qemuImg('create', '-q', ...create.slice(0, -2), join(dir, 'q', create.at(-2)!), create.at(-1)!)).code).toBe(0);
      await copyFile(join(dir, 'q', 'img'), join(dir, 'b', 'img'));
      const fmt = create[1]!;
      const args = ['-f', fmt, ...commands.flatMap((c) => ['-c', c]), 'img'];
      const q = normaliseQemuIo(await run('qemu-io', args, { cwd: join(dir, 'q') }));
      const b = normaliseQemuIo(await runBlockemu(['io', ...args], { cwd: join(dir, 'b') }));
      expect(b).toEqual(q);
      expect(Buffer.compare(await readFile(join(dir, 'b', 'img')), await readFile(join(dir, 'q', 'img')))).toBe(0);
      if (fmt === 'qcow2') expect((await qemuImg('check', join(dir, 'b', 'img'))).code).toBe(0);
    });
  });
});
