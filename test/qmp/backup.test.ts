/**
 * blockdev-backup and the job commands over QMP, against the event
 * sequences and errors qemu-storage-daemon 7.2 shows (recorded in the
 * shared reference: backup.md, jobs.md).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/embed.js';
import type { QmpEvent } from '../../src/qmp/client.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;
const raw = (name: string, file: string) => ({ driver: 'raw', 'node-name': name, file: { driver: 'file', filename: file } });

async function images(dir: string, size: number) {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += 4096) data[i] = (i >> 12) & 0xff;
  await writeFile(join(dir, 's.raw'), data);
  await writeFile(join(dir, 't.raw'), new Uint8Array(size));
  return data;
}

const summary = (events: QmpEvent[]) => events.map((e) => (e.event === 'JOB_STATUS_CHANGE' ? e.data!['status'] : e.event));

describe('drive-backup over QMP', () => {
  it('creates the target, backs up into it, and removes a target it created when the command fails', async () => {
    await withTempDir(async (dir) => {
      const data = await images(dir, 2 * MiB);
      const d = await startDaemon({ blockdevs: [raw('src', join(dir, 's.raw'))] });
      try {
        const c = await d.client();
        const tgt = join(dir, 'new.raw');
        await expect(c.execute('drive-backup', { 'job-id': '1bad', device: 'src', target: tgt, sync: 'full' })).rejects.toMatchObject({ desc: "Invalid job ID '1bad'" });
        await expect(readFile(tgt)).rejects.toThrow(/ENOENT/);
        await c.execute('drive-backup', { 'job-id': 'd', device: 'src', target: tgt, sync: 'full' });
        await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['status'] === 'null');
        const names = (await c.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true })).map((n) => n['node-name']);
        // The target's nodes went away with the job: only the source and its file remain.
        expect(names).toHaveLength(2);
        expect(names).toContain('src');
        expect(Buffer.compare(await readFile(tgt), Buffer.from(data))).toBe(0);
      } finally {
        await d.close();
      }
    });
  });
});

describe('blockdev-backup over QMP', () => {
  it('events and queries as QEMU: created..null, BLOCK_JOB_COMPLETED with offset = len; the target equals the source', async () => {
    await withTempDir(async (dir) => {
      const data = await images(dir, 4 * MiB);
      const d = await startDaemon({ blockdevs: [raw('src', join(dir, 's.raw')), raw('tgt', join(dir, 't.raw'))] });
      try {
        const c = await d.client();
        expect(await c.execute('blockdev-backup', { 'job-id': 'j0', device: 'src', target: 'tgt', sync: 'full', speed: 1 * MiB })).toEqual({});
        const jobs = await c.execute<Array<Record<string, unknown>>>('query-block-jobs');
        expect(jobs).toEqual([
          { type: 'backup', device: 'j0', len: 4 * MiB, offset: expect.any(Number), busy: false, paused: false, speed: MiB, 'io-status': 'ok', ready: false, status: 'running', 'auto-finalize': true, 'auto-dismiss': true },
        ]);
        await expect(c.execute('blockdev-del', { 'node-name': 'tgt' })).rejects.toMatchObject({ desc: "Node 'tgt' is busy: block device is in use by block job: backup" });
        await c.execute('block-job-set-speed', { device: 'j0', speed: 0 });
        const done = await c.waitForEvent('BLOCK_JOB_COMPLETED');
        expect(done.data).toEqual({ type: 'backup', device: 'j0', len: 4 * MiB, offset: 4 * MiB, speed: 0 });
        await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['status'] === 'null');
        expect(await c.execute('query-jobs')).toEqual([]);
        await c.execute('blockdev-del', { 'node-name': 'tgt' });
      } finally {
        await d.close();
      }
      expect(Buffer.compare(await readFile(join(dir, 't.raw')), Buffer.from(data))).toBe(0);
    });
  });

  it('argument and state errors with QEMU\'s classes and texts', async () => {
    await withTempDir(async (dir) => {
      await images(dir, MiB);
      await writeFile(join(dir, 'small.raw'), new Uint8Array(65536));
      const d = await startDaemon({ blockdevs: [raw('src', join(dir, 's.raw')), raw('tgt', join(dir, 't.raw')), raw('small', join(dir, 'small.raw'))] });
      try {
        const c = await d.client();
        const err = (args: Record<string, unknown>) => c.execute('blockdev-backup', { sync: 'full', device: 'src', target: 'tgt', 'job-id': 'j', ...args }).catch((e) => e);
        expect(await err({ device: 'nosrc' })).toMatchObject({ qmpClass: 'GenericError', desc: "Cannot find device='nosrc' nor node-name='nosrc'" });
        expect(await err({ target: 'src' })).toMatchObject({ desc: 'Source and target cannot be the same' });
        expect(await err({ target: 'small' })).toMatchObject({ desc: 'Source and target image have different sizes' });
        expect(await err({ 'job-id': undefined })).toMatchObject({ desc: "Invalid job ID ''" });
        expect(await err({ 'job-id': '1bad' })).toMatchObject({ desc: "Invalid job ID '1bad'" });
        expect(await err({ sync: 'incremental' })).toMatchObject({ desc: "must provide a valid bitmap name for 'incremental' sync mode" });
        expect(await err({ compress: true })).toMatchObject({ desc: 'Compression is not supported for this drive ' });
        expect(await err({ sync: 'fast' })).toMatchObject({ desc: "Parameter 'sync' does not accept value 'fast'" });
        const events: QmpEvent[] = [];
        const collecting = (async () => {
          for await (const e of c.events()) events.push(e);
        })();
        expect(await err({ speed: -5 })).toMatchObject({ desc: "Parameter 'speed' expects a non-negative value" });
        await new Promise((r) => setTimeout(r, 20));
        expect(summary(events)).toEqual(['created', 'null']);
        await expect(c.execute('job-pause', { id: 'nope' })).rejects.toMatchObject({ qmpClass: 'GenericError', desc: 'Job not found' });
        await expect(c.execute('block-job-pause', { device: 'nope' })).rejects.toMatchObject({ qmpClass: 'DeviceNotActive', desc: "Block job 'nope' not found" });
        void collecting;
      } finally {
        await d.close();
      }
    });
  });

  it('auto-finalize/auto-dismiss off, pause/resume, dismiss; cancel reports BLOCK_JOB_CANCELLED', async () => {
    await withTempDir(async (dir) => {
      await images(dir, 4 * MiB);
      const d = await startDaemon({ blockdevs: [raw('src', join(dir, 's.raw')), raw('tgt', join(dir, 't.raw'))] });
      try {
        const c = await d.client();
        await c.execute('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', speed: MiB, 'auto-finalize': false, 'auto-dismiss': false });
        await c.execute('job-pause', { id: 'j' });
        await expect(c.execute('job-pause', { id: 'j' })).rejects.toMatchObject({ desc: 'Job is already paused' });
        await expect(c.execute('block-job-cancel', { device: 'j' })).rejects.toMatchObject({ desc: "The block job for device 'j' is currently paused" });
        await expect(c.execute('job-dismiss', { id: 'j' })).rejects.toMatchObject({ desc: expect.stringMatching(/^Job 'j' in state '(running|paused)' cannot accept command verb 'dismiss'$/) });
        await c.execute('job-resume', { id: 'j' });
        await c.execute('block-job-set-speed', { device: 'j', speed: 0 });
        await c.waitForEvent('BLOCK_JOB_PENDING');
        await expect(c.execute('block-job-set-speed', { device: 'j', speed: 1 })).rejects.toMatchObject({ desc: "Job 'j' in state 'pending' cannot accept command verb 'set-speed'" });
        await c.execute('job-finalize', { id: 'j' });
        await c.waitForEvent('BLOCK_JOB_COMPLETED');
        expect(await c.execute('query-jobs')).toEqual([{ id: 'j', type: 'backup', status: 'concluded', 'current-progress': 4 * MiB, 'total-progress': 4 * MiB }]);
        await c.execute('job-dismiss', { id: 'j' });
        expect(await c.execute('query-jobs')).toEqual([]);

        await c.execute('blockdev-backup', { 'job-id': 'k', device: 'src', target: 'tgt', sync: 'full', speed: MiB });
        await c.execute('job-cancel', { id: 'k' });
        const cancelled = await c.waitForEvent('BLOCK_JOB_CANCELLED');
        expect(cancelled.data).toMatchObject({ type: 'backup', device: 'k', len: 4 * MiB, speed: MiB });
        expect(cancelled.data!['offset']).toBeLessThan(4 * MiB);
      } finally {
        await d.close();
      }
    });
  });
});

describe.skipIf(!qemu.available)('drive-backup with compress into qcow2', () => {
  it('writes compressed clusters: qemu-img check clean, compare equal, every cluster compressed (qemu-img 7.2 map has no compressed field; check counts them), smaller on disk', async () => {
    await withTempDir(async (dir) => {
      // Compressible: every 4 KiB block holds one non-zero byte.
      await images(dir, 4 * MiB);
      const d = await startDaemon({ blockdevs: [raw('src', join(dir, 's.raw'))] });
      const tgt = join(dir, 't.qcow2');
      try {
        const c = await d.client();
        await c.execute('drive-backup', { 'job-id': 'z', device: 'src', target: tgt, format: 'qcow2', sync: 'full', compress: true });
        const done = await c.waitForEvent('BLOCK_JOB_COMPLETED');
        expect(done.data).toMatchObject({ device: 'z', len: 4 * MiB, offset: 4 * MiB });
        expect(done.data).not.toHaveProperty('error');
        await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['status'] === 'null');
      } finally {
        await d.close();
      }
      const check = await qemuImg('check', '--output=json', tgt);
      expect(check.code).toBe(0);
      const checked = JSON.parse(check.stdout) as Record<string, unknown>;
      expect(checked['compressed-clusters']).toBe(64);
      expect(checked).not.toHaveProperty('corruptions');
      expect(checked).not.toHaveProperty('leaks');
      expect((await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', join(dir, 's.raw'), tgt)).code).toBe(0);
      const info = JSON.parse((await qemuImg('info', '--output=json', tgt)).stdout) as { 'actual-size': number };
      expect(info['actual-size']).toBeLessThan(MiB);
    });
  });
});
