/**
 * A dirty bitmap's `count` on both daemons: dirty bits times the
 * granularity (hbitmap_count), so the chunk at the disk's end counts whole
 * and a bitmap coarser than its disk counts a whole granularity. The same
 * rule gives a backup's length and progress (the copy bitmap's count, in
 * clusters), seen here on a disk that is not a whole number of clusters.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, OURS, nbdUri, outcome, startExportDaemon } from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

/** Each bitmap of a node as query-named-block-nodes shows it. */
async function bitmaps(d: Awaited<ReturnType<typeof startExportDaemon>>, node: string): Promise<unknown> {
  const nodes = (await outcome(d.client, d.dir, 'query-named-block-nodes', { flat: true })) as { return: Array<Record<string, unknown>> };
  return nodes.return.find((n) => n['node-name'] === node)?.['dirty-bitmaps'];
}

async function emptyFile(path: string, size: number): Promise<void> {
  const f = await open(path, 'w');
  await f.truncate(size);
  await f.close();
}

async function session(which: Daemon): Promise<unknown[]> {
  return withTempDir(async (dir) => {
    // Persistent bitmaps that qemu-io set in an image of 1.5 MiB: loaded, then counted.
    const img = join(dir, 'p.qcow2');
    expect((await qemuImg('create', '-q', '-f', 'qcow2', img, '1536K')).code).toBe(0);
    for (const [name, g] of [['m1', '1M'], ['m4', '4M'], ['k64', '64K']] as const) expect((await qemuImg('bitmap', '--add', '-g', g, img, name)).code).toBe(0);
    expect((await qemuIo('-c', 'write 1535k 512', img)).code).toBe(0);
    // A raw disk of 100 KiB written through an NBD export, and a backup of it.
    await emptyFile(join(dir, 'r.raw'), 100 * 1024);
    await emptyFile(join(dir, 't.raw'), 100 * 1024);
    const d = await startExportDaemon(which, {
      dir,
      blockdevs: [`driver=file,node-name=pf,filename=${img}`, 'driver=qcow2,node-name=p,file=pf', `driver=file,node-name=r,filename=${join(dir, 'r.raw')}`, `driver=file,node-name=t,filename=${join(dir, 't.raw')}`],
      nbdServer: true,
      exports: ['type=nbd,id=e,node-name=r,writable=on'],
    });
    const log: unknown[] = [];
    try {
      log.push(await bitmaps(d, 'p'));
      for (const [name, granularity] of [['g4m', 4 << 20], ['g64k', 65536], ['g512', 512]] as const) log.push(await outcome(d.client, dir, 'block-dirty-bitmap-add', { node: 'r', name, granularity }));
      expect((await qemuIo('-f', 'raw', '-c', 'write 102000 400', '-c', 'write 0 1', nbdUri(d.nbdPath, 'r'))).code).toBe(0);
      log.push(await bitmaps(d, 'r'));
      // A merge keeps the rule: bits of the finer bitmap set chunks of the coarser one.
      log.push(await outcome(d.client, dir, 'block-dirty-bitmap-add', { node: 'r', name: 'g1m', granularity: 1 << 20, disabled: true }));
      log.push(await outcome(d.client, dir, 'block-dirty-bitmap-merge', { node: 'r', target: 'g1m', bitmaps: ['g512'] }));
      log.push(await bitmaps(d, 'r'));
      for (const args of [
        { 'job-id': 'j', device: 'r', target: 't', sync: 'full' },
        { 'job-id': 'k', device: 'r', target: 't', sync: 'bitmap', bitmap: 'g4m', 'bitmap-mode': 'never' },
      ]) {
        const gone = d.client.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['status'] === 'null', 20_000);
        const reply = await outcome(d.client, dir, 'blockdev-backup', args);
        log.push(reply);
        if ('return' in reply) await gone;
      }
    } finally {
      log.push((await d.quit()).filter((e) => e.event.startsWith('BLOCK_JOB')));
    }
    return log;
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('dirty bitmap count', () => {
  it('counts whole chunks (loaded, marked, merged) and backups count whole clusters, as qemu-storage-daemon', async () => {
    const theirs = await session('qsd');
    // The 4 MiB bitmap of a 1.5 MiB image counts 4 MiB.
    expect(JSON.stringify(theirs[0])).toContain('"granularity":4194304,"count":4194304');
    expect(await session(OURS)).toEqual(theirs);
  }, 60_000);
});
