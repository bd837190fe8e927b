/**
 * A backup tool's test suite on blockemu, written as its maintainers would:
 * the `blockemu/vitest` fixtures give each test a fresh daemon (`daemon`),
 * a typed client (`qmp`) and a work directory (`workdir`); the helpers in
 * backup-tool.ts make the guest disks and run the full backup.
 *
 * Run with the rest: `npm test` (vitest.config.ts includes examples/).
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createImage } from 'blockemu';
import { withDaemon } from 'blockemu/vitest';
import { describe, expect } from 'vitest';
import { bytes, DISK_SIZE, dirtyBytes, fullBackup, guestWrite, MiB, qemuImg, qemuImgJson, readImage, test } from './backup-tool.js';

describe('a backup tool on blockemu', () => {
  test('full backup of two disks, consistent, with a bitmap started in the same transaction', async ({ qmp, workdir }) => {
    await guestWrite(qmp, 'disk0', 0x11, 0, MiB);
    await guestWrite(qmp, 'disk1', 0x22, MiB, MiB);
    // The guest keeps writing the moment the transaction returns: the backups must not see it, the bitmaps must.
    await fullBackup(qmp, workdir, async () => {
      await guestWrite(qmp, 'disk0', 0x33, 0, 64 << 10);
      await guestWrite(qmp, 'disk1', 0x33, MiB, 64 << 10);
    });
    expect((await readImage(join(workdir, 'disk0.full.qcow2'), 0, MiB)).equals(bytes(0x11, MiB))).toBe(true);
    expect((await readImage(join(workdir, 'disk1.full.qcow2'), MiB, MiB)).equals(bytes(0x22, MiB))).toBe(true);
    expect(await dirtyBytes(qmp, 'disk0', 'bm')).toBe(64 << 10);
    expect(await dirtyBytes(qmp, 'disk1', 'bm')).toBe(64 << 10);
    for (const f of ['disk0.full.qcow2', 'disk1.full.qcow2']) expect([0, undefined]).toContain(await qemuImg('check', '-q', join(workdir, f)));
  });

  test('incremental backup from the bitmap: only what changed, and the chain reads as the disk', async ({ qmp, workdir }) => {
    await guestWrite(qmp, 'disk0', 0x11, 0, DISK_SIZE);
    await fullBackup(qmp, workdir);
    await guestWrite(qmp, 'disk0', 0x44, 2 * MiB, 128 << 10);
    expect(await dirtyBytes(qmp, 'disk0', 'bm')).toBe(128 << 10);

    // The incremental target sits on the full backup, as a backup tool stores its chain.
    const inc = join(workdir, 'disk0.inc1.qcow2');
    await createImage(inc, { format: 'qcow2', size: DISK_SIZE, backingFile: join(workdir, 'disk0.full.qcow2'), backingFormat: 'qcow2' });
    const done = qmp.waitForAny(['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'], (e) => e.data.device === 'inc1');
    await qmp.execute('drive-backup', { 'job-id': 'inc1', device: 'disk0', target: inc, format: 'qcow2', mode: 'existing', sync: 'incremental', bitmap: 'bm' });
    const end = await done;
    expect({ event: end.event, error: 'error' in end.data ? end.data.error : undefined }).toEqual({ event: 'BLOCK_JOB_COMPLETED', error: undefined });

    // The bitmap starts over; the chain full <- inc1 reads as the disk does now.
    expect(await dirtyBytes(qmp, 'disk0', 'bm')).toBe(0);
    const now = bytes(0x11, DISK_SIZE);
    now.fill(0x44, 2 * MiB, 2 * MiB + (128 << 10));
    expect((await readImage(inc)).equals(now)).toBe(true);
    // With QEMU's tools: only the changed clusters are in the incremental image, and the chain is sound.
    const map = (await qemuImgJson('map', inc)) as Array<{ start: number; length: number; data: boolean; depth: number }> | undefined;
    if (map) expect(map.filter((m) => m.data && m.depth === 0).map((m) => [m.start, m.length])).toEqual([[2 * MiB, 128 << 10]]);
    expect([0, undefined]).toContain(await qemuImg('check', '-q', inc));
  });

  test('a failing target (blkdebug) fails the incremental backup and keeps the bitmap for the next try', async ({ qmp, workdir }) => {
    await fullBackup(qmp, workdir);
    await guestWrite(qmp, 'disk0', 0x55, 3 * MiB, 64 << 10);
    const before = await dirtyBytes(qmp, 'disk0', 'bm');
    expect(before).toBe(64 << 10);

    const target = join(workdir, 'disk0.inc-failing.qcow2');
    await createImage(target, { format: 'qcow2', size: DISK_SIZE });
    await qmp.execute('blockdev-add', {
      driver: 'qcow2',
      'node-name': 'failing',
      file: { driver: 'blkdebug', 'inject-error': [{ event: 'write_aio', errno: 5 }], image: { driver: 'file', filename: target } },
    });
    const done = qmp.waitForAny(['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'], (e) => e.data.device === 'inc-failing');
    await qmp.execute('blockdev-backup', { 'job-id': 'inc-failing', device: 'disk0', target: 'failing', sync: 'incremental', bitmap: 'bm' });
    const end = await done;
    expect(end.event).toBe('BLOCK_JOB_COMPLETED');
    expect(end.event === 'BLOCK_JOB_COMPLETED' && end.data.error).toBe('Input/output error');
    expect(await dirtyBytes(qmp, 'disk0', 'bm')).toBe(before);

    // The next try, to a good target, takes the same changes and clears the bitmap.
    const retry = join(workdir, 'disk0.inc-retry.qcow2');
    const retried = qmp.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data.device === 'inc-retry');
    await qmp.execute('drive-backup', { 'job-id': 'inc-retry', device: 'disk0', target: retry, format: 'qcow2', sync: 'incremental', bitmap: 'bm' });
    expect((await retried).data.error).toBeUndefined();
    expect((await readImage(retry, 3 * MiB, 64 << 10)).equals(bytes(0x55, 64 << 10))).toBe(true);
    expect(await dirtyBytes(qmp, 'disk0', 'bm')).toBe(0);
  });

  test('cancelling an incremental backup keeps the bitmap', async ({ qmp, workdir }) => {
    await fullBackup(qmp, workdir);
    await guestWrite(qmp, 'disk0', 0x66, 0, DISK_SIZE);
    // Slow enough (64 KiB/s for 4 MiB) that it is still running when cancelled.
    const done = qmp.waitForAny(['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'], (e) => e.data.device === 'slow');
    await qmp.execute('drive-backup', { 'job-id': 'slow', device: 'disk0', target: join(workdir, 'slow.qcow2'), format: 'qcow2', sync: 'incremental', bitmap: 'bm', speed: 64 << 10 });
    await qmp.execute('block-job-cancel', { device: 'slow' });
    const end = await done;
    expect(end.event).toBe('BLOCK_JOB_CANCELLED');
    expect(end.data.offset).toBeLessThan(DISK_SIZE);
    expect(await qmp.execute('query-block-jobs')).toEqual([]);
    expect(await dirtyBytes(qmp, 'disk0', 'bm')).toBe(DISK_SIZE);
  });
});

describe('a rate-limited backup in virtual time', () => {
  const SIZE = 8 * MiB;
  const S = 1e9;
  // Files with data, so each copy takes real time while the virtual clock stands; the clock jumps while the job only waits on it.
  const virtualTest = withDaemon(async ({ workdir }) => {
    await writeFile(join(workdir, 'src.raw'), randomBytes(SIZE));
    return {
      clock: 'virtual',
      blockdevs: [{ driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: join(workdir, 'src.raw') } }],
    };
  });

  virtualTest('1 MiB/s over 8 MiB: progress never runs ahead of the limit, and the whole takes 7 virtual seconds or more', async ({ qmp, workdir }) => {
    const clock = async () => (await qmp.execute('__org.blockemu_query-clock')).ns;
    const t0 = await clock();
    const done = qmp.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data.device === 'rl', 30_000);
    await qmp.execute('drive-backup', { 'job-id': 'rl', device: 'src', target: join(workdir, 'rl.raw'), format: 'raw', sync: 'full', speed: MiB });
    // Mid-job checks: at virtual time t the limiter has let at most floor(t) + 1 MiB through.
    const mid: number[] = [];
    for (;;) {
      const jobs = await qmp.execute('query-block-jobs');
      const now = await clock();
      const job = jobs.find((j) => j.device === 'rl');
      if (!job) break;
      expect(job.offset, `at ${(now - t0) / S} s`).toBeLessThanOrEqual((Math.floor((now - t0) / S) + 1) * MiB);
      if (job.offset > 0 && job.offset < SIZE) mid.push(job.offset);
    }
    expect(mid.length).toBeGreaterThan(0);
    const end = await done;
    expect({ offset: end.data.offset, len: end.data.len, speed: end.data.speed, error: end.data.error }).toEqual({ offset: SIZE, len: SIZE, speed: MiB, error: undefined });
    expect(await clock()).toBeGreaterThanOrEqual(t0 + 7 * S);
    expect((await readImage(join(workdir, 'rl.raw'), 0, SIZE)).equals(await readImage(join(workdir, 'src.raw'), 0, SIZE))).toBe(true);
  });
});
