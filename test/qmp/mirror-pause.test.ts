/**
 * A paused mirror parks only once its copies in flight are done, as QEMU's
 * mirror_pause (mirror_wait_for_all_io) waits for them: meanwhile it is
 * still running and busy, and once paused its offset no longer moves
 * (iotest 219 reads a paused mirror's progress right after the event).
 * The target's first write is held by a stall fault so the copy is in
 * flight when the pause comes.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/embed.js';
import { withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;

describe('pausing a mirror', () => {
  it('waits for the copies in flight, then parks with their progress counted', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 's.raw'), new Uint8Array(4 * MiB).fill(7));
      await writeFile(join(dir, 't.raw'), new Uint8Array(4 * MiB));
      const d = await startDaemon({
        blockdevs: [
          { driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: join(dir, 's.raw') } },
          { driver: 'raw', 'node-name': 'tgt', file: { driver: 'file', filename: join(dir, 't.raw'), 'node-name': 'tgt-file' } },
        ],
      });
      try {
        const c = await d.client();
        await c.execute('__org.blockemu_fault-add', { 'node-name': 'tgt-file', type: 'stall', iotype: 'write', count: 1, id: 'hold' });
        await c.execute('blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', speed: 262144, 'buf-size': 65536 });
        type Info = { status: string; busy: boolean; offset: number };
        const job = async () => (await c.execute<Info[]>('query-block-jobs'))[0]!;
        for (let i = 0; i < 500 && (await c.execute<Array<{ waiting?: number }>>('__org.blockemu_query-faults'))[0]?.waiting !== 1; i++) await new Promise((r) => setTimeout(r, 10));
        await c.execute('block-job-pause', { device: 'j' });
        await new Promise((r) => setTimeout(r, 50));
        // Asked to pause, its first copy still held: not yet paused.
        expect(await job()).toMatchObject({ status: 'running', offset: 0 });
        await c.execute('__org.blockemu_fault-release', { id: 'hold' });
        let info = await job();
        for (let i = 0; i < 500 && info.status !== 'paused'; i++) info = (await new Promise((r) => setTimeout(r, 5)), await job());
        // Parked with the held copy counted, and nothing moves while paused.
        expect(info).toMatchObject({ status: 'paused', busy: false, offset: 65536 });
        await new Promise((r) => setTimeout(r, 100));
        expect((await job()).offset).toBe(65536);
        await c.execute('block-job-cancel', { device: 'j', force: true });
      } finally {
        await d.close();
      }
    });
  });
});
