/**
 * The blkverify driver over QMP. Against qemu-storage-daemon 7.2, the
 * same session: a blkverify node over a qcow2 image and its raw copy, its
 * query entry (named blkverify:RAW:TEST), a backup out of it (every read
 * compared) and one into it (every write to both). Then, on blockemu
 * alone, a read whose children differ: QEMU ends the whole process there;
 * blockemu's daemon fails that read (the backup ends with the error) and
 * goes on serving.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, withDaemon } from '../helpers/bitmap-daemon.js';
import { answer } from '../helpers/qmp-transcript.js';
import { qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;

async function session(which: Daemon, dir: string): Promise<unknown[]> {
  const t: unknown[] = [];
  const f = (name: string) => join(dir, name);
  await withDaemon(
    which,
    join(dir, 'd'),
    async (c) => {
      const say = async (cmd: string, args: Record<string, unknown>) => t.push([cmd, await answer(c, cmd, args)]);
      const backup = async (id: string, device: string, target: string) => {
        await say('blockdev-backup', { 'job-id': id, device, target, sync: 'full' });
        t.push((await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === id)).data);
      };
      await say('blockdev-add', { driver: 'blkverify', 'node-name': 'v', test: { driver: 'qcow2', file: { driver: 'file', filename: f('t.qcow2') } }, raw: { driver: 'file', filename: f('t.raw') } });
      const nodes = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
      t.push(nodes.find((n) => n['node-name'] === 'v')?.['file']);
      await say('blockdev-add', { driver: 'raw', 'node-name': 'out', file: { driver: 'file', filename: f('out.raw') } });
      await say('blockdev-add', { driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: f('src.raw') } });
      await backup('read', 'v', 'out');
      await backup('write', 'src', 'v');
      await say('blockdev-del', { 'node-name': 'v' });
    },
    { bare: true },
  );
  return JSON.parse(JSON.stringify(t).replaceAll(dir, 'DIR')) as unknown[];
}

async function images(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, fmt] of [['t.qcow2', 'qcow2'], ['t.raw', 'raw'], ['out.raw', 'raw'], ['src.raw', 'raw']]) expect((await qemuImg('create', '-q', '-f', fmt!, join(dir, name!), `${MiB}`)).code).toBe(0);
  // The same data in the image under test and in its raw copy; something else in the backup's source.
  for (const [img, fmt] of [['t.qcow2', 'qcow2'], ['t.raw', 'raw']]) expect((await run('qemu-io', ['-f', fmt!, '-c', 'write -q -P 0x5a 64k 128k', join(dir, img!)])).code).toBe(0);
  expect((await run('qemu-io', ['-f', 'raw', '-c', 'write -q -P 0x21 0 1M', join(dir, 'src.raw')])).code).toBe(0);
}

describe.skipIf(!qemu.available)('the blkverify driver over QMP', () => {
  it('opens, names, reads and writes as qemu-storage-daemon does', async () => {
    await withTempDir(async (dir) => {
      await images(join(dir, 'q'));
      await images(join(dir, 'b'));
      const q = await session('qsd', join(dir, 'q'));
      const b = await session('blockemu', join(dir, 'b'));
      expect(b).toEqual(q);
      expect(b).toContainEqual(expect.objectContaining({ device: 'write', offset: MiB }));
      expect(b).toContain('blkverify:DIR/t.raw:DIR/t.qcow2');
      // Written to both children: each holds the source.
      for (const side of ['q', 'b']) {
        expect((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', join(dir, side, 'src.raw'), join(dir, side, 't.qcow2')])).stdout).toBe('Images are identical.\n');
        expect((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', join(dir, side, 'src.raw'), join(dir, side, 't.raw')])).stdout).toBe('Images are identical.\n');
      }
    });
  });

  it('fails a read whose children differ and goes on serving (QEMU ends the process)', async () => {
    await withTempDir(async (dir) => {
      await images(dir);
      expect((await run('qemu-io', ['-f', 'raw', '-c', 'write -q -P 0x11 128k 512', join(dir, 't.raw')])).code).toBe(0);
      await withDaemon(
        'blockemu',
        join(dir, 'd'),
        async (c) => {
          await c.execute('blockdev-add', { driver: 'blkverify', 'node-name': 'v', test: { driver: 'qcow2', file: { driver: 'file', filename: join(dir, 't.qcow2') } }, raw: { driver: 'file', filename: join(dir, 't.raw') } });
          await c.execute('blockdev-add', { driver: 'raw', 'node-name': 'out', file: { driver: 'file', filename: join(dir, 'out.raw') } });
          await c.execute('blockdev-backup', { 'job-id': 'j', device: 'v', target: 'out', sync: 'full' });
          const done = await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === 'j');
          expect(done.data).toMatchObject({ device: 'j', error: 'Input/output error' });
          expect(await c.execute('query-named-block-nodes', { flat: true })).toEqual(expect.arrayContaining([expect.objectContaining({ 'node-name': 'v' })]));
        },
        { bare: true },
      );
    });
  });
});
