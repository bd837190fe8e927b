/**
 * qcow2's external data file over QMP, the same session played against
 * qemu-storage-daemon 7.2 and blockemu's daemon: blockdev-create with
 * data-file and data-file-raw (over a data file that already holds data,
 * as iotest 244 does), its refusals, blockdev-add with a data-file child
 * and without one, and what query-named-block-nodes says of the image.
 * The replies must be equal; the images each daemon wrote must read the
 * same and pass qemu-img check.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, withDaemon } from '../helpers/bitmap-daemon.js';
import { answer, createJob } from '../helpers/qmp-transcript.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;



async function session(which: Daemon, dir: string): Promise<unknown[]> {
  const meta = join(dir, 'meta.qcow2');
  const data = join(dir, 'data.raw');
  const plain = join(dir, 'plain.qcow2');
  await writeFile(meta, new Uint8Array(0));
  await writeFile(data, new Uint8Array(MiB).fill(42));
  await writeFile(plain, new Uint8Array(0));
  const t: unknown[] = [];
  await withDaemon(
    which,
    meta,
    async (c) => {
      const say = async (cmd: string, args: Record<string, unknown>) => t.push([cmd, await answer(c, cmd, args)]);
      await say('blockdev-add', { driver: 'file', 'node-name': 'meta', filename: meta });
      await say('blockdev-add', { driver: 'file', 'node-name': 'data', filename: data });
      await say('blockdev-add', { driver: 'file', 'node-name': 'plain', filename: plain });
      t.push(await createJob(c, { driver: 'qcow2', file: 'meta', size: MiB, 'data-file-raw': true }));
      t.push(await createJob(c, { driver: 'qcow2', file: 'meta', size: MiB, 'data-file': 'data', version: 'v2' }));
      t.push(await createJob(c, { driver: 'qcow2', file: 'meta', size: MiB, 'data-file': 'data', 'data-file-raw': true, 'backing-file': 'x' }));
      t.push(await createJob(c, { driver: 'qcow2', file: 'meta', size: MiB, 'data-file': 'nope' }));
      t.push(await createJob(c, { driver: 'qcow2', file: 'plain', size: MiB }));
      // The image over the data file as it is: metadata preallocated, the data left where it was.
      t.push(await createJob(c, { driver: 'qcow2', file: 'meta', size: MiB, 'data-file': 'data', 'data-file-raw': true }));
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'p', file: 'plain', 'data-file': 'data' });
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'disk', file: 'meta', 'data-file': 'data' });
      const nodes = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
      const disk = nodes.find((n) => n['node-name'] === 'disk') as { image: Record<string, unknown>; file: string } | undefined;
      t.push(disk && { file: disk.file, formatSpecific: disk.image['format-specific'] });
      await say('blockdev-del', { 'node-name': 'data' });
      await say('blockdev-del', { 'node-name': 'disk' });
      // Without the option, the header's name is opened as a file node of its own.
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'disk2', file: 'meta' });
      await say('blockdev-del', { 'node-name': 'disk2' });
    },
    { bare: true },
  );
  return JSON.parse(JSON.stringify(t).replaceAll(dir, 'DIR')) as unknown[];
}

describe.skipIf(!qemu.available)('qcow2 data-file over QMP (vs qemu-storage-daemon)', () => {
  it('blockdev-create and blockdev-add with a data file answer as qsd does, and write images qemu-img reads alike', async () => {
    await withTempDir(async (dir) => {
      await mkdir(join(dir, 'q'));
      await mkdir(join(dir, 'b'));
      const q = await session('qsd', join(dir, 'q'));
      const b = await session('blockemu', join(dir, 'b'));
      expect(b).toEqual(q);
      // The data file kept its bytes and reads as the image (data-file-raw).
      for (const side of ['q', 'b']) {
        const meta = join(dir, side, 'meta.qcow2');
        expect((await qemuImg('check', meta)).code).toBe(0);
        expect((await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', join(dir, side, 'data.raw'), meta)).stdout).toBe('Images are identical.\n');
      }
      const maps = await Promise.all(['q', 'b'].map(async (side) => (await qemuImg('map', '--output=json', join(dir, side, 'meta.qcow2'))).stdout));
      expect(maps[1]).toBe(maps[0]);
    });
  });
});
