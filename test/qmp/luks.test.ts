/**
 * The luks format over QMP, the same session played against
 * qemu-storage-daemon 7.2 and blockemu's daemon: blockdev-add of a LUKS
 * image with its key-secret and the open's refusals, the node as
 * query-named-block-nodes describes it, a backup out of it, and
 * blockdev-create's luks refusals. QEMU's own LUKS creation times PBKDF2
 * in thread CPU time, which fails now and then on this machine, so what
 * blockemu's blockdev-create makes is read by QEMU instead. Replies must
 * be equal and each backup must read as the image does.
 */
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, withDaemon } from '../helpers/bitmap-daemon.js';
import { answer, createJob } from '../helpers/qmp-transcript.js';
import { qemu, qemuImg, run, runBlockemu, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;
const SECRET = ['--object', 'secret,id=sec0,data=123456'];
/** What differs from image to image: the random uuid and salts' iterations, measured when it was made. */
const stable = (v: unknown) => JSON.parse(JSON.stringify(v ?? null).replace(/"(uuid|iters|master-key-iters)":("[^"]*"|\d+)/g, '"$1":"X"')) as unknown;

async function session(which: Daemon, dir: string, luks: string): Promise<unknown[]> {
  const target = join(dir, 'target.raw');
  const copy = join(dir, 'copy.luks');
  await copyFile(luks, copy);
  const fresh = join(dir, 'fresh.luks');
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
      await say('blockdev-add', { driver: 'luks', 'node-name': 'n1', file: file(luks) });
      await say('blockdev-add', { driver: 'luks', 'node-name': 'n2', file: file(luks), 'key-secret': 'bad' });
      await say('blockdev-add', { driver: 'luks', 'node-name': 'n3', file: file(luks), 'key-secret': 'nosuch' });
      await say('blockdev-add', { driver: 'luks', 'node-name': 'src', file: file(luks), 'key-secret': 'sec0' });
      const nodes = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
      t.push(stable(nodes.find((n) => n['node-name'] === 'src')));
      await say('blockdev-add', { driver: 'raw', 'node-name': 'target', file: file(target) });
      await say('blockdev-backup', { 'job-id': 'b', device: 'src', target: 'target', sync: 'full' });
      t.push((await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === 'b')).data);
      await say('blockdev-del', { 'node-name': 'src' });
      // Opened read-only, reopened read-write (block_crypto_reopen_prepare checks nothing), then written by a backup into it.
      const ro = { driver: 'luks', 'node-name': 'back', file: { driver: 'file', 'node-name': 'backfile', filename: copy }, 'key-secret': 'sec0' };
      await say('blockdev-add', { ...ro, 'read-only': true });
      await say('blockdev-backup', { 'job-id': 'ro', device: 'target', target: 'back', sync: 'full' });
      await say('blockdev-reopen', { options: [{ ...ro, file: 'backfile', 'read-only': false }] });
      await say('blockdev-backup', { 'job-id': 'rw', device: 'target', target: 'back', sync: 'full' });
      t.push((await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === 'rw')).data);
      // block_crypto_co_truncate: the file takes the payload offset plus the new size; a size not in sectors is refused first.
      await say('block_resize', { 'node-name': 'back', size: 6 * MiB });
      await say('block_resize', { 'node-name': 'back', size: 6 * MiB + 100 });
      const resized = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
      t.push((resized.find((n) => n['node-name'] === 'back')?.['image'] as Record<string, unknown> | undefined)?.['virtual-size']);
      // An external snapshot over it: the overlay names its backing file by the luks node's json: name (its key-secret in it).
      await say('blockdev-snapshot-sync', { 'node-name': 'back', 'snapshot-file': join(dir, 'overlay.qcow2'), 'snapshot-node-name': 'over', format: 'qcow2' });

      await say('blockdev-del', { 'node-name': 'target' });
      await say('blockdev-add', { driver: 'file', 'node-name': 'ffile', filename: fresh });
      t.push(await createJob(c, { driver: 'luks', file: 'ffile', size: MiB }));
      t.push(await createJob(c, { driver: 'luks', file: 'ffile', size: MiB, 'key-secret': 'nosuch' }));
      t.push(await createJob(c, { driver: 'luks', file: 'nosuch', size: MiB, 'key-secret': 'sec0' }));
    },
    { bare: true },
  );
  return JSON.parse(JSON.stringify(t).replaceAll(dir, 'DIR')) as unknown[];
}

describe.skipIf(!qemu.available)('the luks format over QMP (vs qemu-storage-daemon)', () => {
  it('opens, refuses, describes and backs up luks images, and refuses their creation, as qsd does', async () => {
    await withTempDir(async (dir) => {
      const luks = join(dir, 'src.luks');
      expect((await runBlockemu(['img', 'create', '-q', '-f', 'luks', ...SECRET, '-o', 'key-secret=sec0,iter-time=10', luks, '4M'])).code).toBe(0);
      const io = await run('qemu-io', [...SECRET, '--image-opts', `driver=luks,file.filename=${luks},key-secret=sec0`, '-c', 'write -P 0x5a 1k 3k', '-c', 'write -P 0x77 1M 300k', '-c', 'write -z 2M 64k']);
      expect(io.code).toBe(0);
      for (const side of ['q', 'b']) {
        await mkdir(join(dir, side));
        expect((await qemuImg('create', '-q', '-f', 'raw', join(dir, side, 'target.raw'), '4M')).code).toBe(0);
      }
      const q = await session('qsd', join(dir, 'q'), luks);
      const b = await session('blockemu', join(dir, 'b'), luks);
      expect(b).toEqual(q);
      // The session got as far as it should: the node opened with its key, the backup out of it completed.
      expect(b).toContainEqual(expect.objectContaining({ 'node-name': 'src', drv: 'luks', encrypted: true }));
      expect(b).toContainEqual(expect.objectContaining({ device: 'b', offset: 4 * MiB }));
      // The overlay blockdev-snapshot-sync made names its luks backing file with the key-secret, as QEMU names it.
      const backingName = async (side: string) => JSON.parse((await qemuImg('info', '--output=json', join(dir, side, 'overlay.qcow2'))).stdout)['backing-filename'] as string;
      const [qb, bb] = [await backingName('q'), await backingName('b')];
      expect(bb.replaceAll(join(dir, 'b'), 'DIR')).toBe(qb.replaceAll(join(dir, 'q'), 'DIR'));
      expect(bb).toMatch(/^json:\{.*"driver": "luks".*"key-secret": "sec0"/);
      for (const side of ['q', 'b']) {
        const cmp = await run('qemu-img', ['compare', ...SECRET, '--image-opts', `driver=luks,file.filename=${luks},key-secret=sec0`, `driver=raw,file.filename=${join(dir, side, 'target.raw')}`]);
        expect(cmp.stdout).toBe('Images are identical.\n');
        // The backup into the reopened node: its copy reads as the image does (up to the image's size: the copy was grown).
        const plain = async (img: string, out: string) => {
          const r = await run('qemu-img', ['convert', ...SECRET, '--image-opts', `driver=luks,file.filename=${img},key-secret=sec0`, '-O', 'raw', out]);
          expect(r.stderr).toBe('');
          return readFile(out);
        };
        const a = await plain(luks, join(dir, side, 'src.plain'));
        const c = await plain(join(dir, side, 'copy.luks'), join(dir, side, 'copy.plain'));
        expect(c.length).toBe(6 * MiB + 512);
        expect(Buffer.compare(a, c.subarray(0, a.length))).toBe(0);
      }
    });
  });

  it('blockdev-create makes a LUKS image qemu-io reads and writes, and the daemon opens', async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'new.luks');
      await writeFile(img, new Uint8Array(0));
      let made: unknown;
      await withDaemon(
        'blockemu',
        join(dir, 'd'),
        async (c) => {
          await c.execute('object-add', { 'qom-type': 'secret', id: 'sec0', data: '123456' });
          await c.execute('blockdev-add', { driver: 'file', 'node-name': 'f', filename: img });
          const opts = { driver: 'luks', file: 'f', size: 4 * MiB, 'key-secret': 'sec0', 'iter-time': 10, 'cipher-alg': 'aes-128', 'cipher-mode': 'cbc', preallocation: 'full' };
          expect(await createJob(c, opts)).toEqual({ error: undefined });
          await c.execute('blockdev-add', { driver: 'luks', 'node-name': 'made', file: 'f', 'key-secret': 'sec0' });
          made = (await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true })).find((n) => n['node-name'] === 'made');
        },
        { bare: true },
      );
      const io = await run('qemu-io', [...SECRET, '--image-opts', `driver=luks,file.filename=${img},key-secret=sec0`, '-c', 'write -q -P 0x11 5k 70k', '-c', 'read -q -P 0x11 5k 70k']);
      expect(io).toMatchObject({ code: 0, stdout: '', stderr: '' });
      const info = JSON.parse((await qemuImg('info', '--output=json', img)).stdout) as Record<string, unknown>;
      expect(info).toMatchObject({ format: 'luks', 'virtual-size': 4 * MiB, 'actual-size': expect.any(Number) });
      // Fully preallocated: the whole payload is on disk.
      expect(info['actual-size']).toBeGreaterThanOrEqual(4 * MiB);
      const data = (info['format-specific'] as { data: Record<string, unknown> }).data;
      expect(data).toMatchObject({ 'cipher-alg': 'aes-128', 'cipher-mode': 'cbc' });
      // The daemon's view of the node is what qemu-img says of the image.
      expect(made).toMatchObject({ drv: 'luks', encrypted: true, image: { format: 'luks', 'virtual-size': 4 * MiB, 'format-specific': { type: 'luks', data: { 'cipher-alg': 'aes-128', 'payload-offset': data['payload-offset'] } } } });
    });
  });
});
