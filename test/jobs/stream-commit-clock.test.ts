/**
 * Stream and commit rate-limited on blockemu's virtual clock: the job
 * sleeps after each copy as QEMU's ratelimit says (100 ms slices), so its
 * virtual duration is what it copied over its speed, to the nanosecond,
 * and the job finishes in a fraction of that in real time.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/embed.js';
import type { QmpClient } from '../../src/qmp/client.js';
import { makeChain } from '../helpers/chain-session.js';
import { qemu, withTempDir } from '../helpers/qemu.js';

const K = 1024;
const S = 1e9;

async function timed(c: QmpClient, command: string, args: Record<string, unknown>): Promise<number> {
  const t0 = (await c.execute<{ ns: number }>('__org.blockemu_query-clock')).ns;
  await c.execute(command, args);
  const done = await c.waitForEvent('BLOCK_JOB_COMPLETED');
  expect(done.data).not.toHaveProperty('error');
  return (await c.execute<{ ns: number }>('__org.blockemu_query-clock')).ns - t0;
}

describe.skipIf(!qemu.available)('stream and commit on the virtual clock', () => {
  it('take what they copy over their speed: stream 384 KiB, commit 320 KiB, at 64 KiB/s', async () => {
    await withTempDir(async (dir) => {
      await makeChain(dir);
      const d = await startDaemon({ clock: 'virtual', blockdevs: [{ driver: 'qcow2', 'node-name': 'top', file: { driver: 'file', filename: join(dir, 'top.qcow2') } }] });
      try {
        const c = await d.client();
        const started = Date.now();
        // mid's [128k, 384k) and its zeroes at [512k, 576k) go into base.
        expect(await timed(c, 'block-commit', { 'job-id': 'c', device: 'top', top: join(dir, 'mid.qcow2'), speed: 64 * K })).toBe(5 * S);
        await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['status'] === 'null');
        // Then [0, 256k) and [320k, 384k) from base, and the zeroes, into top.
        expect(await timed(c, 'block-stream', { 'job-id': 's', device: 'top', speed: 64 * K })).toBe(6 * S);
        expect(Date.now() - started).toBeLessThan(5000);
      } finally {
        await d.close();
      }
    });
  });
});
