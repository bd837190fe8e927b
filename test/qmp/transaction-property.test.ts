/**
 * Random transactions (1–6 actions of every kind blockemu carries out,
 * with failures at prepare: missing devices and bitmaps, duplicate ids,
 * targets in missing directories, abort actions; and jobs whose target
 * fails once running) against one daemon: a transaction that fails leaves
 * jobs, nodes, bitmaps and the directory exactly as before; one that
 * succeeds made every action take effect; no job is left behind and the
 * daemon keeps serving.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/embed.js';
import type { QmpClient } from '../../src/qmp/client.js';
import { QmpError } from '../../src/qmp/error.js';
import { withTempDir } from '../helpers/qemu.js';

const SIZE = 1 << 20;
const NODES = ['a', 'b'] as const;
const BITMAPS = ['x', 'y'] as const;

type Spec =
  | { kind: 'abort' }
  | { kind: 'blockdev-backup'; device: string; target: 't1' | 't2' | 'bad'; dupId: boolean }
  | { kind: 'drive-backup'; device: string; missingDir: boolean }
  | { kind: 'bitmap'; op: 'add' | 'remove' | 'clear' | 'enable' | 'disable'; node: string; name: string };

const device = fc.constantFrom<string>('a', 'b', 'nosuch');
const spec: fc.Arbitrary<Spec> = fc.oneof(
  { weight: 1, arbitrary: fc.constant<Spec>({ kind: 'abort' }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('blockdev-backup' as const), device, target: fc.constantFrom('t1' as const, 't2' as const, 'bad' as const), dupId: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('drive-backup' as const), device, missingDir: fc.boolean() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('bitmap' as const),
      op: fc.constantFrom('add' as const, 'remove' as const, 'clear' as const, 'enable' as const, 'disable' as const),
      node: fc.constantFrom<string>(...NODES, 'nosuch'),
      name: fc.constantFrom<string>(...BITMAPS),
    }),
  },
);

interface State {
  jobs: unknown;
  nodes: string[];
  bitmaps: Record<string, Array<{ name?: string; recording: boolean }>>;
  files: string[];
}

async function state(c: QmpClient, dir: string): Promise<State> {
  const nodes = await c.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name?: string; recording: boolean }> }>>('query-named-block-nodes', { flat: true });
  const named = nodes.filter((n) => !n['node-name'].startsWith('#'));
  return {
    jobs: await c.execute('query-jobs'),
    nodes: nodes.map((n) => n['node-name']).sort(),
    bitmaps: Object.fromEntries(named.map((n) => [n['node-name'], (n['dirty-bitmaps'] ?? []).map((b) => ({ name: b.name, recording: b.recording }))])),
    files: (await readdir(dir)).sort(),
  };
}

describe('transaction: all or nothing (property)', () => {
  it('random transactions either take full effect or leave nothing behind', async () => {
    await withTempDir(async (dir) => {
      for (const f of ['a.raw', 'b.raw', 't1.raw', 't2.raw', 'bad.raw']) await writeFile(join(dir, f), new Uint8Array(SIZE).fill(f.charCodeAt(0)));
      await mkdir(join(dir, 'out'));
      const raw = (name: string, file: string) => ({ driver: 'raw', 'node-name': name, file: { driver: 'file', filename: join(dir, file) } });
      const d = await startDaemon({
        blockdevs: [
          raw('a', 'a.raw'),
          raw('b', 'b.raw'),
          raw('t1', 't1.raw'),
          raw('t2', 't2.raw'),
          // Every write to 'bad' fails: its job starts, then fails.
          { driver: 'raw', 'node-name': 'bad', file: { driver: 'blkdebug', image: { driver: 'file', filename: join(dir, 'bad.raw') }, 'inject-error': [{ event: 'write_aio', errno: 5 }] } },
        ],
      });
      const c = await d.client();
      let run = 0;
      let succeeded = 0;
      try {
        await fc.assert(
          fc.asyncProperty(fc.array(spec, { minLength: 1, maxLength: 6 }), fc.boolean(), async (specs, grouped) => {
            run++;
            const out = join(dir, 'out');
            const ids: string[] = [];
            const actions = specs.map((s, i) => {
              const id = s.kind === 'blockdev-backup' && s.dupId && ids.length > 0 ? ids[0]! : `r${run}j${i}`;
              if (s.kind === 'abort') return { type: 'abort', data: {} };
              if (s.kind === 'blockdev-backup') {
                ids.push(id);
                return { type: 'blockdev-backup', data: { 'job-id': id, device: s.device, target: s.target, sync: 'full' } };
              }
              if (s.kind === 'drive-backup') {
                ids.push(id);
                const target = s.missingDir ? join(out, 'missing', `${id}.raw`) : join(out, `${id}.raw`);
                return { type: 'drive-backup', data: { 'job-id': id, device: s.device, target, format: 'raw', sync: 'full' } };
              }
              return { type: `block-dirty-bitmap-${s.op}`, data: { node: s.node, name: s.name } };
            });
            const before = await state(c, out);
            let ok = true;
            try {
              await c.execute<unknown>('transaction', { actions, ...(grouped ? { properties: { 'completion-mode': 'grouped' } } : {}) });
            } catch (err) {
              if (!(err instanceof QmpError)) throw err;
              ok = false;
            }
            if (!ok) {
              // Nothing of it remains: no job, node, bitmap change or file.
              expect(await state(c, out)).toEqual(before);
              return;
            }
            succeeded++;
            // Every job of it ran to its end (completed, failed or cancelled by its group) and left.
            const jobIds = [...new Set(ids)];
            for (const id of jobIds) await c.waitForEvent('JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === id && (e.data as { status: string }).status === 'null', 10_000);
            c.takeEvents();
            const after = await state(c, out);
            expect(after.jobs).toEqual([]);
            // Each drive-backup created its target; the target nodes went away with the jobs.
            for (const [i, s] of specs.entries()) if (s.kind === 'drive-backup') expect(after.files).toContain(`r${run}j${i}.raw`);
            expect(after.nodes).toEqual(before.nodes);
            // Bitmaps: the last action on each name decides whether it exists and records.
            for (const s of specs) {
              if (s.kind !== 'bitmap') continue;
              const last = [...specs].reverse().find((t): t is Extract<Spec, { kind: 'bitmap' }> => t.kind === 'bitmap' && t.node === s.node && t.name === s.name && t.op !== 'clear');
              const found = after.bitmaps[s.node]?.find((b) => b.name === s.name);
              if (!last) continue; // only clears: the bitmap existed and still does
              if (last.op === 'remove') expect(found).toBeUndefined();
              else if (last.op === 'add' || last.op === 'enable') expect(found?.recording).toBe(true);
              else if (last.op === 'disable') expect(found?.recording).toBe(false);
            }
          }),
          { numRuns: Number(process.env.TXN_RUNS ?? 100) },
        );
        expect(await c.execute('query-version')).toBeTruthy();
        // The generator must reach both outcomes, or the property says little.
        expect(succeeded).toBeGreaterThan(0);
        expect(succeeded).toBeLessThan(run);
      } finally {
        await d.close();
      }
    });
  }, 120_000);
});
