/**
 * Closing a daemon while jobs run — what the vitest fixture does after a
 * test that failed mid-backup — cancels them without stray errors: a job
 * whose run had just ended was finalized twice (its own way and the
 * shutdown's cancel), the second time from `null` ("illegal transition").
 */
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { createImage, startDaemon } from '../src/index.js';
import { withTempDir } from './helpers/qemu.js';

it('close() with backup jobs of a transaction running reports nothing unhandled', async () => {
  await withTempDir(async (dir) => {
    const stray: unknown[] = [];
    const record = (e: unknown) => stray.push(e);
    process.on('uncaughtException', record);
    process.on('unhandledRejection', record);
    try {
      for (let round = 0; round < 3; round++) {
        const nodes = ['a', 'b'];
        for (const n of nodes) await createImage(join(dir, `${round}${n}.qcow2`), { format: 'qcow2', size: 4 << 20 });
        const d = await startDaemon({ blockdevs: nodes.map((n) => ({ driver: 'qcow2', 'node-name': n, file: { driver: 'file', filename: join(dir, `${round}${n}.qcow2`) } })) });
        const c = await d.client();
        for (const n of nodes) await c.execute('human-monitor-command', { 'command-line': `qemu-io ${n} "write -P 17 0 1M"` });
        const actions = nodes.map((n) => ({ type: 'drive-backup' as const, data: { 'job-id': `j${n}`, device: n, target: join(dir, `${round}${n}.t.qcow2`), format: 'qcow2', sync: 'full' as const } }));
        await c.execute('transaction', { actions });
        await d.close();
      }
      // What a job does after the close runs on later turns of the event loop.
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      process.off('uncaughtException', record);
      process.off('unhandledRejection', record);
    }
    expect(stray.map(String)).toEqual([]);
  });
});
