/**
 * Random guest writes during a mirror (property): some as the job starts
 * and copies, some once it is ready, through the mirror's filter node as a
 * guest's would go, in both copy modes and at several granularities and
 * buffer sizes. After job-complete the target holds exactly what the
 * source holds last; after a cancel before ready the source holds exactly
 * what was written to it and is back in its place.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/embed.js';
import type { QmpClient } from '../../src/qmp/client.js';
import { withTempDir } from '../helpers/qemu.js';

const SIZE = 2 << 20;

interface Write {
  offset: number;
  length: number;
  pattern: number;
}

const write: fc.Arbitrary<Write> = fc
  .record({ offset: fc.integer({ min: 0, max: SIZE / 512 - 1 }), sectors: fc.integer({ min: 1, max: 512 }), pattern: fc.integer({ min: 1, max: 255 }) })
  .map(({ offset, sectors, pattern }) => ({ offset: offset * 512, length: Math.min(sectors * 512, SIZE - offset * 512), pattern }));

async function guestWrite(c: QmpClient, node: string, w: Write, model: Uint8Array): Promise<void> {
  await c.execute('human-monitor-command', { 'command-line': `qemu-io ${node} "write -P ${w.pattern} ${w.offset} ${w.length}"` });
  model.fill(w.pattern, w.offset, w.offset + w.length);
}

const jobGone = (c: QmpClient, id: string) =>
  c.waitForEvent('JOB_STATUS_CHANGE', (e) => (e.data as { id: string }).id === id && (e.data as { status: string }).status === 'null', 10_000);

describe('mirror under guest writes (property)', () => {
  it('the target ends equal to the source after job-complete; a cancel before ready leaves the source as written', async () => {
    await withTempDir(async (dir) => {
      const d = await startDaemon();
      const c = await d.client();
      let run = 0;
      try {
        await fc.assert(
          fc.asyncProperty(
            fc.array(write, { maxLength: 4 }),
            fc.array(write, { maxLength: 6 }),
            fc.array(write, { maxLength: 6 }),
            fc.constantFrom('background', 'write-blocking'),
            fc.constantFrom(4096, 65536),
            fc.constantFrom(0, 131072),
            fc.boolean(),
            async (before, during, afterReady, copyMode, granularity, bufSize, cancelEarly) => {
              run++;
              const src = join(dir, `s${run}.raw`);
              const tgt = join(dir, `t${run}.raw`);
              // Distinct old contents, so a copy that missed something shows.
              await writeFile(src, new Uint8Array(SIZE).map((_, i) => (i >> 9) & 0xff));
              await writeFile(tgt, new Uint8Array(SIZE).fill(0xee));
              const model = new Uint8Array(await readFile(src));
              await c.execute('blockdev-add', { driver: 'raw', 'node-name': `s${run}`, file: { driver: 'file', filename: src } });
              await c.execute('blockdev-add', { driver: 'raw', 'node-name': `t${run}`, file: { driver: 'file', filename: tgt } });
              for (const w of before) await guestWrite(c, `s${run}`, w, model);
              const id = `m${run}`;
              await c.execute('blockdev-mirror', {
                'job-id': id,
                device: `s${run}`,
                target: `t${run}`,
                sync: 'full',
                granularity,
                ...(bufSize ? { 'buf-size': bufSize } : {}),
                'copy-mode': copyMode,
                'filter-node-name': `f${run}`,
              });
              // Writes race the first copy: they go through the filter, as a guest's would.
              const racing = during.map((w) => guestWrite(c, `f${run}`, w, model));
              if (cancelEarly) {
                await Promise.all(racing);
                await c.execute('block-job-cancel', { device: id, force: true });
                await jobGone(c, id);
                c.takeEvents();
                expect(Buffer.compare(await readFile(src), model)).toBe(0);
                const nodes = await c.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true });
                expect(nodes.map((n) => n['node-name'])).not.toContain(`f${run}`);
              } else {
                await Promise.all(racing);
                await c.waitForEvent('BLOCK_JOB_READY', (e) => (e.data as { device: string }).device === id, 10_000);
                for (const w of afterReady) await guestWrite(c, `f${run}`, w, model);
                await c.execute('job-complete', { id });
                await jobGone(c, id);
                c.takeEvents();
                expect(Buffer.compare(await readFile(src), model)).toBe(0);
                expect(Buffer.compare(await readFile(tgt), model)).toBe(0);
              }
              await c.execute('blockdev-del', { 'node-name': `s${run}` }).catch(() => undefined);
              await c.execute('blockdev-del', { 'node-name': `t${run}` }).catch(() => undefined);
            },
          ),
          { numRuns: Number(process.env['MIRROR_RUNS'] ?? 12) },
        );
      } finally {
        await d.close();
      }
    });
  }, 120_000);
});
