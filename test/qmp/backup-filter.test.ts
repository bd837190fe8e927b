/**
 * The copy-before-write filter sits above the backup's source as
 * bdrv_cbw_append puts it: the source's parent nodes use the filter while
 * the job runs and the source again once it is gone, and a guest write
 * through a parent still reaches the target as the old data first.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { internalDaemon } from '../../src/embed.js';
import { startDaemon } from '../../src/index.js';
import { withTempDir } from '../helpers/qemu.js';

describe('backup filter placement', () => {
  it("takes over the source's parents while the job runs and gives them back at its end", async () => {
    await withTempDir(async (dir) => {
      const size = 1 << 20;
      await writeFile(join(dir, 'a.raw'), new Uint8Array(size).fill(0x11));
      await writeFile(join(dir, 't.raw'), new Uint8Array(size));
      const d = await startDaemon({
        blockdevs: [
          { driver: 'raw', 'node-name': 'a', file: { driver: 'file', filename: join(dir, 'a.raw') } },
          { driver: 'raw', 'node-name': 'top', file: 'a' },
          { driver: 'raw', 'node-name': 'top2', file: 'a' },
          { driver: 'raw', 'node-name': 't', file: { driver: 'file', filename: join(dir, 't.raw') } },
        ],
      });
      try {
        const c = await d.client();
        const fileOf = (name: string) => internalDaemon(d).graph.get(name)?.child('file')?.nodeName;
        // sync=none: only what guests overwrite is copied; the job idles until cancelled.
        await c.execute('blockdev-backup', { 'job-id': 'j', device: 'a', target: 't', sync: 'none', 'filter-node-name': 'cbw' });
        expect([fileOf('top'), fileOf('top2')]).toEqual(['cbw', 'cbw']);
        await c.execute('human-monitor-command', { 'command-line': 'qemu-io top "write -P 0x22 64k 64k"' });
        await c.execute('block-job-cancel', { device: 'j', force: true });
        await c.waitForEvent('JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'j' && (e.data as { status: string }).status === 'null', 10_000);
        expect([fileOf('top'), fileOf('top2')]).toEqual(['a', 'a']);
        expect(internalDaemon(d).graph.get('cbw')).toBeUndefined();

        // Deleting every parent leaves the job's filter in place: the job holds it, as QEMU's holds its cbw node.
        await c.execute('blockdev-backup', { 'job-id': 'j2', device: 'a', target: 't', sync: 'none', 'filter-node-name': 'cbw2' });
        await c.execute('blockdev-del', { 'node-name': 'top' });
        await c.execute('blockdev-del', { 'node-name': 'top2' });
        expect(internalDaemon(d).graph.get('cbw2')?.child('file')?.nodeName).toBe('a');
        await c.execute('block-job-cancel', { device: 'j2', force: true });
        await c.waitForEvent('JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'j2' && (e.data as { status: string }).status === 'null', 10_000);
        expect(internalDaemon(d).graph.get('cbw2')).toBeUndefined();
        const t = await readFile(join(dir, 't.raw'));
        expect(t.subarray(64 << 10, 128 << 10).every((b) => b === 0x11)).toBe(true);
        expect(t.subarray(0, 64 << 10).every((b) => b === 0)).toBe(true);
        const a = await readFile(join(dir, 'a.raw'));
        expect(a.subarray(64 << 10, 128 << 10).every((b) => b === 0x22)).toBe(true);
      } finally {
        await d.close();
      }
    });
  });
});
