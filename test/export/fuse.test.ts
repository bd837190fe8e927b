/**
 * FUSE exports against qemu-storage-daemon 7.2: the same session on copies
 * of the same images through both daemons — QMP replies and events, and
 * what programs see through the mounted file: stat's size and mode, the
 * data, chmod's refusals, SEEK_DATA/SEEK_HOLE (qemu-img map), short writes
 * at the end of a fixed export, truncate and fallocate, growing writes.
 * Needs root and /dev/fuse (a FUSE mount); skipped with a message without.
 */
import { copyFile, mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, OURS, normalise, outcome, startExportDaemon, takeEvents } from '../helpers/export-daemon.js';
import { fuseUnavailable } from '../../iotests/fuse.js';
import { QEMU_IO_TIMING, qemu, qemuImg, qemuIo, run } from '../helpers/qemu.js';

const missing = fuseUnavailable();
if (missing) console.warn(`SKIP FUSE export tests: ${missing}`);

type Entry = unknown;

describe.skipIf(!qemu.available || !qemu.storageDaemon || missing !== undefined)('FUSE exports, compared with qemu-storage-daemon', () => {
  let base: string;
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'blockemu-fuse-'));
    const img = join(base, 'src.qcow2');
    await qemuImg('create', '-f', 'qcow2', img, '64M');
    await qemuIo('-f', 'qcow2', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 4M 64k', '-c', 'write -z 8M 1M', img);
    await qemuImg('create', '-f', 'raw', join(base, 'src.raw'), '1M');
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  /** One daemon's transcript: QMP outcomes and events, and what shell tools see through the mount. */
  async function session(which: Daemon): Promise<Entry[]> {
    const dir = join(base, which);
    await mkdir(dir);
    const img = join(dir, 'img.qcow2');
    const raw = join(dir, 'img.raw');
    const mp = join(dir, 'mp');
    await copyFile(join(base, 'src.qcow2'), img);
    await copyFile(join(base, 'src.raw'), raw);
    await mkdir(join(dir, 'adir'));
    await writeFile(mp, '');
    const d = await startExportDaemon(which, {
      dir,
      blockdevs: [`file,node-name=proto,filename=${img}`, 'qcow2,node-name=fmt,file=proto', `file,node-name=rawfile,filename=${raw}`],
    });
    const log: Entry[] = [];
    const qmp = async (cmd: string, args?: Record<string, unknown>, events = 0) => {
      log.push([cmd, await outcome(d.client, dir, cmd, args)]);
      if (events > 0) log.push(await takeEvents(d.client, events));
    };
    const sh = async (cmd: string, ...args: string[]) => {
      const r = await run(cmd, args);
      // dd's statistics line and qemu-io's carry timings.
      const out = (r.stdout + r.stderr).replace(/^\d+ bytes.* copied.*$/gm, '').replace(QEMU_IO_TIMING, '$1TIME').trim();
      log.push([cmd, ...args.map((a) => a.replaceAll(dir, '${TMP}')), r.code, normalise(out, dir)]);
    };
    const add = (id: string, node: string, extra: Record<string, unknown>) => qmp('block-export-add', { type: 'fuse', id, 'node-name': node, ...extra });
    try {
      await add('e0', 'fmt', { mountpoint: join(dir, 'none') });
      await add('e0', 'fmt', { mountpoint: join(dir, 'adir') });
      await add('e0', 'nosuch', { mountpoint: mp });
      await qmp('nbd-server-start', { addr: { type: 'unix', data: { path: join(dir, 'nbd.sock') } } });
      await add('ro', 'fmt', { mountpoint: mp });
      await qmp('block-export-add', { type: 'nbd', id: 'n', 'node-name': 'fmt' });
      // Only the NBD exports go with their server.
      await qmp('nbd-server-stop', undefined, 1);
      await add('again', 'fmt', { mountpoint: mp });
      await add('ro', 'rawfile', { mountpoint: raw });
      await qmp('query-block-exports');
      await sh('stat', '-c', '%s %a %F', mp);
      await sh('sha256sum', mp);
      await sh('qemu-img', 'map', '-f', 'raw', '--output=json', mp);
      await sh('chmod', '0600', mp);
      await sh('chmod', '0500', mp);
      await sh('chmod', '0444', mp);
      await sh('stat', '-c', '%a', mp);
      await sh('qemu-io', '-f', 'raw', '-c', 'write 0 4k', mp);
      await qmp('block-export-del', { id: 'ro' }, 1);
      await sh('stat', '-c', '%s', mp);

      await add('rw', 'fmt', { mountpoint: mp, writable: true });
      await sh('qemu-io', '-f', 'raw', '-c', 'write -P 0x33 1M 64k', '-c', 'read -P 0x33 1M 64k', '-c', 'read -P 0x11 0 64k', mp);
      // A file still open when its export goes: the lazy unmount leaves it to fail from then on.
      const held = await open(mp, 'r');
      await qmp('block-export-del', { id: 'rw' }, 1);
      const after = await held.read(Buffer.alloc(512), 0, 512, 0).then(
        (r) => r.bytesRead,
        (err: NodeJS.ErrnoException) => err.code,
      );
      log.push(['read after del', after]);
      await held.close().catch(() => undefined);
      await qmp('block-export-del', { id: 'ro' }, 1);

      // A fixed raw export: writes stop at its end; truncate and fallocate resize it.
      await add('fixed', 'rawfile', { mountpoint: mp, writable: true });
      await sh('dd', 'if=/dev/zero', `of=${mp}`, 'bs=4k', 'count=1', 'seek=256', 'conv=notrunc');
      await sh('truncate', '-s', '2M', mp);
      await sh('stat', '-c', '%s', mp);
      await sh('fallocate', '-o', '2M', '-l', '1M', mp);
      await sh('fallocate', '-o', '64k', '-l', '64k', mp);
      await sh('fallocate', '-p', '-o', '0', '-l', '64k', mp);
      await sh('fallocate', '-z', '-o', '3M', '-l', '64k', mp);
      await sh('stat', '-c', '%s', mp);
      await qmp('block-export-del', { id: 'fixed' }, 1);

      await add('grow', 'rawfile', { mountpoint: mp, writable: true, growable: true });
      await sh('dd', 'if=/dev/zero', `of=${mp}`, 'bs=4k', 'count=4', `seek=${(3 << 20) / 4096 + 16}`, 'conv=notrunc');
      await sh('stat', '-c', '%s', mp);
      await sh('truncate', '-s', '1M', mp);
      await sh('stat', '-c', '%s', mp);
      log.push(['quit', normalise(await d.quit(), dir)]);
      await sh('stat', '-c', '%s', mp);
      await sh('qemu-img', 'check', img);
    } finally {
      if (d.proc.exitCode === null) await d.quit();
    }
    return log;
  }

  it('plays the same session with the same outcomes', async () => {
    const qsd = await session('qsd');
    const ours = await session(OURS);
    expect(ours).toEqual(qsd);
  }, 120_000);
});

/** The pid of the perl child of `parent` whose script reads /dev/fuse. */
async function readerOf(parent: number): Promise<number | undefined> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (Number(stat.replace(/^.*\) /s, '').split(' ')[1]) !== parent) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.startsWith('perl') && cmdline.includes('sysread($dev')) return Number(pid);
  }
  return undefined;
}

describe.skipIf(!qemu.available || missing !== undefined)('a FUSE export whose reader dies', () => {
  it('fails the file with ENOTCONN instead of hanging it, and the daemon goes on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blockemu-fuse-kill-'));
    try {
      const raw = join(dir, 'img.raw');
      const mp = join(dir, 'mp');
      await qemuImg('create', '-f', 'raw', raw, '1M');
      await writeFile(mp, '');
      const d = await startExportDaemon('blockemu', { dir, blockdevs: [`file,node-name=f,filename=${raw}`], exports: [`fuse,id=e,node-name=f,mountpoint=${mp},writable=on`] });
      try {
        expect((await run('stat', ['-c', '%s', mp])).stdout.trim()).toBe('1048576');
        // The reader is the daemon's perl child that reads /dev/fuse.
        const reader = await readerOf(d.proc.pid!);
        expect(reader).toBeDefined();
        process.kill(reader!, 'SIGKILL');
        await new Promise((r) => setTimeout(r, 200));
        const read = await run('dd', [`if=${mp}`, 'of=/dev/null', 'bs=4k', 'count=1']);
        expect(read.stderr).toMatch(/Transport endpoint is not connected/);
        expect(await outcome(d.client, dir, 'query-block-exports')).toEqual({ return: [{ id: 'e', type: 'fuse', 'node-name': 'f', 'shutting-down': false }] });
        expect(await outcome(d.client, dir, 'block-export-del', { id: 'e' })).toEqual({ return: {} });
        expect((await run('stat', ['-c', '%s', mp])).stdout.trim()).toBe('0');
      } finally {
        await d.quit();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
