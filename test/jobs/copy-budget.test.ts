/**
 * The daemon's copy budget (src/jobs/copy-budget.ts): background copies of
 * all its jobs hold at most the budget's task buffers, plus one per job
 * beyond it, and every share goes back when a job's pass ends.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { internalDaemon, startDaemon } from '../../src/embed.js';
import { COPY_BUDGET_BYTES, CopyBudget } from '../../src/jobs/copy-budget.js';
import { withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;

describe('CopyBudget', () => {
  it('gives what is free, a first share past the budget, and takes back what is given', () => {
    const b = new CopyBudget(2 * MiB);
    expect(b.tryTake(MiB)).toBe(true);
    expect(b.tryTake(MiB)).toBe(true);
    expect(b.tryTake(MiB)).toBe(false);
    expect(b.tryTake(MiB, true)).toBe(true);
    expect(b.available).toBe(-MiB);
    b.give(3 * MiB);
    expect(b.available).toBe(2 * MiB);
  });
});

describe('backups sharing one daemon', () => {
  it('hold at most the budget plus one task per job, complete with the source’s data, and give every share back', async () => {
    await withTempDir(async (dir) => {
      const jobs = 6;
      const blockdevs = [];
      for (let i = 0; i < jobs; i++) {
        await writeFile(join(dir, `s${i}.raw`), new Uint8Array(8 * MiB).fill(i + 1));
        await writeFile(join(dir, `t${i}.raw`), new Uint8Array(8 * MiB));
        blockdevs.push({ driver: 'raw', 'node-name': `s${i}`, file: { driver: 'file', filename: join(dir, `s${i}.raw`) } });
        blockdevs.push({ driver: 'raw', 'node-name': `t${i}`, file: { driver: 'file', filename: join(dir, `t${i}.raw`) } });
      }
      const d = await startDaemon({ blockdevs });
      try {
        const budget = internalDaemon(d).jobs.copyBudget;
        const c = await d.client();
        let least = budget.available;
        const watch = setInterval(() => (least = Math.min(least, budget.available)), 0);
        for (let i = 0; i < jobs; i++) await c.execute('blockdev-backup', { 'job-id': `j${i}`, device: `s${i}`, target: `t${i}`, sync: 'full' });
        for (let done = 0; done < jobs; ) if ((await c.waitForEvent('BLOCK_JOB_COMPLETED')).data) done++;
        clearInterval(watch);
        // The budget was drawn on, and never past one forced first share for each job but the one that drew first.
        expect(least).toBeLessThan(COPY_BUDGET_BYTES);
        expect(least).toBeGreaterThanOrEqual(-(jobs - 1) * MiB);
        expect(budget.available).toBe(COPY_BUDGET_BYTES);
        for (let i = 0; i < jobs; i++) {
          const r = await c.execute<string>('human-monitor-command', { 'command-line': `qemu-io t${i} "read -P ${i + 1} 0 8M"` });
          expect(r).toMatch(/^read 8388608\/8388608/);
        }
      } finally {
        await d.close();
      }
    });
  }, 60_000);
});
