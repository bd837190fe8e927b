/**
 * Cancelling a backup in each state it can be held in (running, paused,
 * stopped on a target error, pending, concluded) leaves the source as it
 * was and the qcow2 target a consistent image; block-job-set-speed takes
 * effect at once. The event sequences and errors were checked against
 * qemu-storage-daemon 7.2 (conformance scenarios 10-13, 27).
 */
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/embed.js';
import type { QmpClient } from '../../src/qmp/client.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;

type State = 'running' | 'paused' | 'stopped on error' | 'pending' | 'concluded';

const status = (c: QmpClient, id: string, s: string) => c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['id'] === id && e.data?.['status'] === s);

/** Past the paused/running pair QEMU reports while it drains the graph to set the job up. */
async function started(c: QmpClient, id: string) {
  await status(c, id, 'running');
  await status(c, id, 'paused');
  await status(c, id, 'running');
}

async function jobStatus(c: QmpClient, id: string) {
  const jobs = await c.execute<Array<{ id: string; status: string }>>('query-jobs');
  return jobs.find((j) => j.id === id)?.status;
}

async function setup(dir: string, failingTarget: boolean) {
  const data = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i += 512) data[i] = ((i >> 9) * 7 + 1) & 0xff;
  const src = join(dir, 's.raw');
  await writeFile(src, data);
  await copyFile(src, join(dir, 'before.raw'));
  const tgt = join(dir, 't.qcow2');
  expect((await qemuImg('create', '-f', 'qcow2', tgt, String(SIZE))).code).toBe(0);
  const image = { driver: 'file', filename: tgt };
  const file = failingTarget ? { driver: 'blkdebug', image, 'inject-error': [{ event: 'write_aio', errno: 5, once: true }] } : image;
  return startDaemon({
    blockdevs: [
      { driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: src } },
      { driver: 'qcow2', 'node-name': 'tgt', file },
    ],
  });
}

async function cancelIn(state: State) {
  await withTempDir(async (dir) => {
    const d = await setup(dir, state === 'stopped on error');
    try {
      const c = await d.client();
      const manual = state === 'pending' || state === 'concluded';
      await c.execute('blockdev-backup', {
        'job-id': 'j', device: 'src', target: 'tgt', sync: 'full',
        speed: state === 'running' || state === 'paused' ? MiB : 0,
        ...(state === 'stopped on error' ? { 'on-target-error': 'stop' } : {}),
        ...(manual ? { 'auto-finalize': false, 'auto-dismiss': state !== 'concluded' } : {}),
      });
      await started(c, 'j');
      if (state === 'paused') {
        await c.execute('job-pause', { id: 'j' });
        await status(c, 'j', 'paused');
      } else if (state === 'stopped on error') {
        const err = await c.waitForEvent('BLOCK_JOB_ERROR');
        expect(err.data).toEqual({ device: 'j', operation: 'write', action: 'stop' });
        await status(c, 'j', 'paused');
        const [job] = await c.execute<Array<Record<string, unknown>>>('query-block-jobs');
        expect(job).toMatchObject({ device: 'j', paused: true, status: 'paused', 'io-status': 'failed' });
      } else if (manual) {
        await status(c, 'j', 'pending');
      }
      if (state === 'concluded') {
        await c.execute('job-finalize', { id: 'j' });
        await status(c, 'j', 'concluded');
        await expect(c.execute('job-cancel', { id: 'j' })).rejects.toMatchObject({ qmpClass: 'GenericError', desc: "Job 'j' in state 'concluded' cannot accept command verb 'cancel'" });
        await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === 'j');
        await c.execute('job-dismiss', { id: 'j' });
      } else {
        expect(await jobStatus(c, 'j')).toBe(state === 'stopped on error' ? 'paused' : state);
        if (state === 'stopped on error') {
          // A job stopped by its error policy counts as user-paused (QEMU's block_job_error_action).
          await expect(c.execute('block-job-cancel', { device: 'j' })).rejects.toMatchObject({ desc: "The block job for device 'j' is currently paused" });
          await c.execute('block-job-cancel', { device: 'j', force: true });
        } else {
          await c.execute('job-cancel', { id: 'j' });
        }
        const ev = await c.waitForEvent('BLOCK_JOB_CANCELLED', (e) => e.data?.['device'] === 'j');
        expect(ev.data).toMatchObject({ type: 'backup', len: SIZE });
      }
      await status(c, 'j', 'null');
      expect(await c.execute('query-jobs')).toEqual([]);
    } finally {
      await d.close();
    }
    const cmp = await qemuImg('compare', '-f', 'raw', '-F', 'raw', join(dir, 'before.raw'), join(dir, 's.raw'));
    expect(cmp.stdout + cmp.stderr).toContain('Images are identical');
    const check = await qemuImg('check', '-f', 'qcow2', join(dir, 't.qcow2'));
    expect(check.stdout + check.stderr).toContain('No errors were found');
    expect(check.code).toBe(0);
    if (state === 'concluded') {
      const done = await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', join(dir, 's.raw'), join(dir, 't.qcow2'));
      expect(done.stdout + done.stderr).toContain('Images are identical');
    }
  });
}

describe.skipIf(!qemu.available)('cancelling a backup leaves the source untouched and the target consistent', () => {
  it.each<State>(['running', 'paused', 'stopped on error', 'pending', 'concluded'])('cancel while %s', cancelIn, 20_000);
});

describe.skipIf(!qemu.available)('block-job-set-speed mid-job', () => {
  it('takes effect at once in query-block-jobs, and speed 0 lets the job finish with speed 0 in its event', async () => {
    await withTempDir(async (dir) => {
      const d = await setup(dir, false);
      try {
        const c = await d.client();
        await c.execute('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', speed: MiB });
        await started(c, 'j');
        const speed = async () => (await c.execute<Array<{ speed: number }>>('query-block-jobs'))[0]!.speed;
        expect(await speed()).toBe(MiB);
        await c.execute('block-job-set-speed', { device: 'j', speed: 2 * MiB });
        expect(await speed()).toBe(2 * MiB);
        await expect(c.execute('block-job-set-speed', { device: 'j', speed: -1 })).rejects.toMatchObject({ qmpClass: 'GenericError', desc: "Parameter 'speed' expects a non-negative value" });
        expect(await speed()).toBe(2 * MiB);
        await c.execute('block-job-set-speed', { device: 'j', speed: 0 });
        const ev = await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === 'j');
        expect(ev.data).toEqual({ device: 'j', type: 'backup', len: SIZE, offset: SIZE, speed: 0 });
      } finally {
        await d.close();
      }
      const done = await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', join(dir, 's.raw'), join(dir, 't.qcow2'));
      expect(done.stdout + done.stderr).toContain('Images are identical');
    });
  }, 20_000);
});
