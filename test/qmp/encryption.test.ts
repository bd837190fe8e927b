/**
 * Encrypted qcow2 over QMP, the same session played against
 * qemu-storage-daemon 7.2 and blockemu's daemon: a secret object, a LUKS
 * image (made by blockemu, written by qemu-io) opened with its key-secret,
 * the open's refusals (no key, a wrong key, an unknown secret, the wrong
 * format, legacy AES in a daemon), a backup out of the encrypted node and
 * blockdev-create's encryption refusals. Replies must be equal, the backups
 * must read as the encrypted image does. LUKS creation over QMP is checked
 * on blockemu alone (QEMU measures PBKDF2 in thread CPU time, which fails
 * on this machine now and then): qemu-io must read what it made.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, withDaemon } from '../helpers/bitmap-daemon.js';
import { answer, createJob } from '../helpers/qmp-transcript.js';
import { qemu, qemuImg, run, runBlockemu, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;
const SECRET = ['--object', 'secret,id=sec0,data=123456'];



async function session(which: Daemon, dir: string, luks: string, aes: string): Promise<unknown[]> {
  const target = join(dir, 'target.qcow2');
  const fresh = join(dir, 'fresh.qcow2');
  await writeFile(fresh, new Uint8Array(0));
  const t: unknown[] = [];
  await withDaemon(
    which,
    join(dir, 'd'),
    async (c) => {
      const say = async (cmd: string, args: Record<string, unknown>) => t.push([cmd, await answer(c, cmd, args)]);
      const file = (filename: string) => ({ driver: 'file', filename });
      await say('object-add', { 'qom-type': 'secret', id: 'sec0', data: '123456' });
      await say('object-add', { 'qom-type': 'secret', id: 'bad', data: 'nope' });
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'n1', file: file(luks) });
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'n2', file: file(luks), encrypt: { format: 'luks', 'key-secret': 'bad' } });
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'n3', file: file(luks), encrypt: { format: 'luks', 'key-secret': 'nosuch' } });
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'n4', file: file(luks), encrypt: { format: 'aes', 'key-secret': 'sec0' } });
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'n5', file: file(aes), encrypt: { format: 'aes', 'key-secret': 'sec0' } });
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'src', file: file(luks), encrypt: { format: 'luks', 'key-secret': 'sec0' } });
      const nodes = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
      const src = nodes.find((n) => n['node-name'] === 'src') as Record<string, unknown> | undefined;
      t.push({ encrypted: src?.['encrypted'], drv: src?.['drv'], image: src?.['image'] });
      await say('blockdev-add', { driver: 'file', 'node-name': 'tfile', filename: target });
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'target', file: 'tfile' });
      await say('blockdev-backup', { 'job-id': 'b', device: 'src', target: 'target', sync: 'full' });
      t.push((await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === 'b')).data);
      await say('blockdev-del', { 'node-name': 'target' });
      await say('blockdev-del', { 'node-name': 'src' });
      await say('blockdev-add', { driver: 'file', 'node-name': 'ffile', filename: fresh });
      t.push(await createJob(c, { driver: 'qcow2', file: 'ffile', size: MiB, encrypt: { format: 'luks' } }));
      t.push(await createJob(c, { driver: 'qcow2', file: 'ffile', size: MiB, encrypt: { format: 'luks', 'key-secret': 'nosuch' } }));
    },
    { bare: true },
  );
  return JSON.parse(JSON.stringify(t).replaceAll(dir, 'DIR')) as unknown[];
}

describe.skipIf(!qemu.available)('encrypted qcow2 over QMP (vs qemu-storage-daemon)', () => {
  it('opens, refuses and backs up encrypted images as qsd does', async () => {
    await withTempDir(async (dir) => {
      const luks = join(dir, 'luks.qcow2');
      const aes = join(dir, 'aes.qcow2');
      expect((await runBlockemu(['img', 'create', '-q', '-f', 'qcow2', ...SECRET, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', luks, '4M'])).code).toBe(0);
      expect((await qemuImg('create', '-q', '-f', 'qcow2', ...SECRET, '-o', 'encryption=on,encrypt.key-secret=sec0', aes, '1M')).code).toBe(0);
      const io = await run('qemu-io', [...SECRET, '--image-opts', `driver=qcow2,file.filename=${luks},encrypt.key-secret=sec0`, '-c', 'write -P 0x5a 1k 3k', '-c', 'write -P 0x77 1M 300k', '-c', 'write -z 2M 64k']);
      expect(io.code).toBe(0);
      for (const side of ['q', 'b']) {
        await mkdir(join(dir, side));
        expect((await qemuImg('create', '-q', '-f', 'qcow2', join(dir, side, 'target.qcow2'), '4M')).code).toBe(0);
      }
      const q = await session('qsd', join(dir, 'q'), luks, aes);
      const b = await session('blockemu', join(dir, 'b'), luks, aes);
      expect(b).toEqual(q);
      for (const side of ['q', 'b']) {
        const cmp = await run('qemu-img', ['compare', ...SECRET, '--image-opts', `driver=qcow2,file.filename=${luks},encrypt.key-secret=sec0`, `driver=qcow2,file.filename=${join(dir, side, 'target.qcow2')}`]);
        expect(cmp.stdout).toBe('Images are identical.\n');
      }
    });
  });

  it('blockdev-create makes a LUKS image qemu-io reads and writes', async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'new.qcow2');
      await writeFile(img, new Uint8Array(0));
      await withDaemon(
        'blockemu',
        join(dir, 'd'),
        async (c) => {
          await c.execute('object-add', { 'qom-type': 'secret', id: 'sec0', data: '123456' });
          await c.execute('blockdev-add', { driver: 'file', 'node-name': 'f', filename: img });
          expect(await createJob(c, { driver: 'qcow2', file: 'f', size: 4 * MiB, encrypt: { format: 'luks', 'key-secret': 'sec0', 'iter-time': 10 } })).toEqual({ error: undefined });
        },
        { bare: true },
      );
      const io = await run('qemu-io', [...SECRET, '--image-opts', `driver=qcow2,file.filename=${img},encrypt.key-secret=sec0`, '-c', 'write -q -P 0x11 5k 70k', '-c', 'read -q -P 0x11 5k 70k', '-c', 'read -q -P 0 0 5k']);
      expect(io).toMatchObject({ code: 0, stdout: '', stderr: '' });
      expect((await run('qemu-img', ['check', ...SECRET, '--image-opts', `driver=qcow2,file.filename=${img},encrypt.key-secret=sec0`])).code).toBe(0);
      expect((await qemuImg('info', img)).stdout).toContain('format: luks');
    });
  });
});
