/**
 * Backup with a sync bitmap: the bitmap's fate per bitmap-mode and outcome
 * (block/backup.c backup_cleanup_sync_bitmap), predicted by a model as
 * iotest 257 does, and an incremental chain checked by qemu-img compare.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addBitmap } from '../../src/blockdev/bitmap-ops.js';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { BackupJob, type BackupListener, type BitmapMode } from '../../src/jobs/backup.js';
import { startDaemon } from '../../src/embed.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

const KiB = 1024;
const SIZE = 1024 * KiB;
const CLUSTER = 64 * KiB;
const quiet: BackupListener = { statusChanged: () => undefined, pending: () => undefined, finished: () => undefined, removed: () => undefined, ioError: () => undefined };

/** Bytes a bitmap of granularity g counts for these dirty byte ranges. */
function count(g: number, ranges: Array<[number, number]>): number {
  const set = new Set<number>();
  for (const [o, l] of ranges) for (let c = Math.floor(o / g); c <= Math.floor((o + l - 1) / g); c++) set.add(c);
  return set.size * g;
}

const range = fc.tuple(fc.nat({ max: SIZE - 1 }), fc.integer({ min: 1, max: 100 * KiB })).map(([o, l]): [number, number] => [o, Math.min(l, SIZE - o)]);

describe('backup with a sync bitmap', () => {
  it('leaves the bitmap as backup_cleanup_sync_bitmap does, and copies exactly the bitmap clusters (model)', async () => {
    await withTempDir(async (dir) => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(range, { minLength: 1, maxLength: 6 }),
          fc.array(range, { maxLength: 4 }),
          fc.constantFrom<BitmapMode>('on-success', 'never', 'always'),
          fc.constantFrom('complete', 'cancel'),
          fc.constantFrom(512, 4 * KiB, 64 * KiB, 256 * KiB),
          async (before, during, mode, outcome, granularity) => {
            await writeFile(join(dir, 's.raw'), new Uint8Array(SIZE).fill(1));
            await writeFile(join(dir, 't.raw'), new Uint8Array(SIZE));
            const g = new BlockGraph();
            const src = await openBlockdev(g, { driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: join(dir, 's.raw') } });
            const tgt = await openBlockdev(g, { driver: 'raw', 'node-name': 'tgt', file: { driver: 'file', filename: join(dir, 't.raw') } });
            const { bitmap } = await addBitmap(g, { node: 'src', name: 'bm', granularity });
            for (const [o, l] of before) await src.write(o, new Uint8Array(l).fill(2));
            bitmap.createSuccessor();
            const job = new BackupJob('j', quiet, { source: src, target: tgt, sync: 'bitmap', syncBitmap: bitmap, bitmapMode: mode });
            expect(job.progressTotal).toBe(Math.min(SIZE, count(Math.max(granularity, CLUSTER), before)));
            for (const [o, l] of during) await src.write(o, new Uint8Array(l).fill(3));
            if (outcome === 'cancel') await job.cancel();
            else job.start();
            await job.concludedPromise;
            const after = src.dirtyBitmaps.lookup('bm');
            expect(src.dirtyBitmaps.all()).toHaveLength(1);
            expect(after.busy).toBe(false);
            const cg = Math.max(granularity, CLUSTER);
            if (mode === 'always' && outcome === 'cancel') {
              // The new writes, plus the copy clusters never copied (those the writes did not push out), whole clusters.
              const touched = (rs: Array<[number, number]>) => {
                const set = new Set<number>();
                for (const [o, l] of rs) for (let c = Math.floor(o / cg); c <= Math.floor((o + l - 1) / cg); c++) set.add(c);
                return set;
              };
              const pushed = touched(during);
              const left = [...touched(before)].filter((c) => !pushed.has(c)).map((c): [number, number] => [c * cg, Math.min(cg, SIZE - c * cg)]);
              expect(after.count).toBe(Math.min(SIZE, count(granularity, [...during, ...left])));
            } else {
              const keepsOld = mode === 'never' || outcome === 'cancel';
              expect(after.count).toBe(Math.min(SIZE, count(granularity, keepsOld ? [...before, ...during] : during)));
            }
            if (outcome === 'complete') {
              // Clusters of the bitmap hold the data of job start (2 where written before, else 1); others stay zero.
              const t = await readFile(join(dir, 't.raw'));
              const expected = new Uint8Array(SIZE);
              const s0 = new Uint8Array(SIZE).fill(1);
              for (const [o, l] of before) s0.fill(2, o, o + l);
              for (const [o, l] of before) {
                const a = Math.floor(o / cg) * cg;
                const e = Math.min(SIZE, Math.ceil((o + l) / cg) * cg);
                expected.set(s0.subarray(a, e), a);
              }
              expect(Buffer.compare(t, Buffer.from(expected))).toBe(0);
            }
            await g.closeAll();
          },
        ),
        { numRuns: 25 },
      );
    });
  });

  it.skipIf(!qemu.available)('full backup, writes, incremental backup over QMP: qemu-img compare of the chain with the source', async () => {
    await withTempDir(async (dir) => {
      const f = (n: string) => join(dir, n);
      await qemuImg('create', '-q', '-f', 'qcow2', f('src.qcow2'), '4M');
      await qemuImg('create', '-q', '-f', 'qcow2', f('full.qcow2'), '4M');
      const q2 = (name: string, file: string, extra: Record<string, unknown> = {}) => ({ driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: file }, ...extra });
      const d = await startDaemon({ blockdevs: [q2('src', f('src.qcow2')), q2('full', f('full.qcow2'))] });
      try {
        const c = await d.client();
        const io = (cmd: string) => c.execute('human-monitor-command', { 'command-line': `qemu-io src "${cmd}"` });
        await io('write -P 1 0 1M');
        await c.execute('block-dirty-bitmap-add', { node: 'src', name: 'bm0' });
        await c.execute('blockdev-backup', { 'job-id': 'j0', device: 'src', target: 'full', sync: 'full' });
        await c.waitForEvent('BLOCK_JOB_COMPLETED');
        for (const w of ['write -P 7 64k 4k', 'write -P 8 1M 512', 'write -P 9 3M 100k']) await io(w);
        const bitmaps = async () => (await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true })).find((n) => n['node-name'] === 'src')!['dirty-bitmaps'];
        expect(await bitmaps()).toEqual([{ name: 'bm0', recording: true, persistent: false, busy: false, granularity: 65536, count: 262144 }]);
        await qemuImg('create', '-q', '-f', 'qcow2', '-b', f('full.qcow2'), '-F', 'qcow2', f('inc.qcow2'), '4M');
        await c.execute<unknown>('blockdev-add', q2('inc', f('inc.qcow2'), { backing: null }));
        await expect(c.execute('blockdev-backup', { device: 'src', target: 'inc', sync: 'bitmap', bitmap: 'bm0' })).rejects.toMatchObject({ desc: 'Bitmap sync mode must be given when providing a bitmap' });
        await c.execute('blockdev-backup', { 'job-id': 'j1', device: 'src', target: 'inc', sync: 'incremental', bitmap: 'bm0' });
        const done = await c.waitForEvent('BLOCK_JOB_COMPLETED');
        expect(done.data).toMatchObject({ len: 262144, offset: 262144 });
        expect(await bitmaps()).toEqual([{ name: 'bm0', recording: true, persistent: false, busy: false, granularity: 65536, count: 0 }]);
        await c.execute('blockdev-del', { 'node-name': 'inc' });
      } finally {
        await d.close();
      }
      const cmp = await qemuImg('compare', '-f', 'qcow2', '-F', 'qcow2', f('inc.qcow2'), f('src.qcow2'));
      expect(cmp.stdout.trim()).toBe('Images are identical.');
    });
  });
});
