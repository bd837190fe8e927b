/**
 * Compressed backups on both daemons: where the target holds compressed
 * clusters, zero clusters and nothing, as `qemu-img map` shows it. Zeroes
 * the source reports as zeroes are written as zeroes, never compressed;
 * a drive-backup target is opened with detect-zeroes=unmap, so zero data
 * read from the source is not stored either; a compressed write marks
 * the target's dirty bitmaps like any other write.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, OURS, outcome, startExportDaemon } from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

const KiB = 1024;

/** A 4 MiB raw file: data in clusters 0 and 2, zeroes written (allocated) in cluster 5, a hole elsewhere. */
async function rawSource(path: string): Promise<void> {
  const f = await open(path, 'w');
  await f.truncate(4 << 20);
  await f.write(new Uint8Array(64 * KiB).fill(1), 0, 64 * KiB, 0);
  await f.write(new Uint8Array(100).fill(2), 0, 100, 128 * KiB);
  await f.write(new Uint8Array(64 * KiB), 0, 64 * KiB, 320 * KiB);
  await f.close();
}

/** A 1 MiB qcow2 image: data, zero data (allocated), a zero cluster, nothing, a small write. */
async function qcow2Source(path: string): Promise<void> {
  expect((await qemuImg('create', '-q', '-f', 'qcow2', path, '1M')).code).toBe(0);
  const io = await qemuIo('-c', 'write -P 1 0 64k', '-c', 'write -P 0 64k 64k', '-c', 'write -z 128k 64k', '-c', 'write -P 3 256k 4k', path);
  expect(io.code).toBe(0);
}

async function mapAndCheck(path: string): Promise<{ map: unknown; check: unknown }> {
  const map = await qemuImg('map', '--output=json', path);
  const check = JSON.parse((await qemuImg('check', '--output=json', path)).stdout) as Record<string, unknown>;
  delete check['filename'];
  return { map: JSON.parse(map.stdout), check };
}

/** Plays a backup of node `src` and waits for the job to go; the replies, the target's dirty bitmaps, and the target image. */
async function session(which: Daemon, dir: string, blockdevs: string[], backup: [string, Record<string, unknown>], target: string) {
  const d = await startExportDaemon(which, { dir, blockdevs });
  const log: unknown[] = [];
  try {
    const targetNode = backup[0] === 'blockdev-backup';
    if (targetNode) log.push(await outcome(d.client, dir, 'block-dirty-bitmap-add', { node: 'tgt', name: 'b', granularity: 65536 }));
    const gone = d.client.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['status'] === 'null', 20_000);
    log.push(await outcome(d.client, dir, ...backup));
    await gone;
    if (targetNode) {
      const nodes = (await outcome(d.client, dir, 'query-named-block-nodes', { flat: true })) as { return: Array<Record<string, unknown>> };
      log.push(nodes.return.find((n) => n['node-name'] === 'tgt')?.['dirty-bitmaps']);
    }
  } finally {
    await d.quit();
  }
  return { log, image: await mapAndCheck(target) };
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('backup with compress: true', () => {
  it('drive-backup: the source\'s holes and the zero data read stay unallocated in the target, as in QEMU', async () => {
    const play = (which: Daemon) =>
      withTempDir(async (dir) => {
        await rawSource(join(dir, 's.raw'));
        const target = join(dir, 't.qcow2');
        return session(which, dir, [`driver=file,node-name=sf,filename=${join(dir, 's.raw')}`, 'driver=raw,node-name=src,file=sf'], ['drive-backup', { 'job-id': 'j', device: 'src', target, format: 'qcow2', sync: 'full', compress: true }], target);
      });
    const theirs = await play('qsd');
    // Two compressed clusters, the rest zero clusters.
    expect(theirs.image.check).toMatchObject({ 'allocated-clusters': 2, 'compressed-clusters': 2 });
    expect(await play(OURS)).toEqual(theirs);
  }, 60_000);

  it('blockdev-backup: zeroes reported by the source become zero clusters, zero data is compressed, the bitmap sees every write', async () => {
    const play = (which: Daemon) =>
      withTempDir(async (dir) => {
        await qcow2Source(join(dir, 's.qcow2'));
        const target = join(dir, 't.qcow2');
        expect((await qemuImg('create', '-q', '-f', 'qcow2', target, '1M')).code).toBe(0);
        const blockdevs = [
          `driver=file,node-name=sf,filename=${join(dir, 's.qcow2')}`,
          'driver=qcow2,node-name=src,file=sf',
          `driver=file,node-name=tf,filename=${target}`,
          'driver=qcow2,node-name=tgt,file=tf',
        ];
        return session(which, dir, blockdevs, ['blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', compress: true }], target);
      });
    const theirs = await play('qsd');
    expect(theirs.image.check).toMatchObject({ 'allocated-clusters': 3, 'compressed-clusters': 3 });
    expect(await play(OURS)).toEqual(theirs);
  }, 60_000);
});
