/**
 * Virtual time: the clock itself, a rate-limited backup driven by hand
 * (measured rate against the asked one, set-speed mid-job), and the
 * daemon on --clock virtual, where a 64 MiB backup at 1 MiB/s takes 64
 * virtual seconds and sends the events a real-time run sends.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { startDaemon } from '../../src/embed.js';
import { BackupJob, type BackupListener } from '../../src/jobs/backup.js';
import { VirtualClock } from '../../src/blockdev/clock.js';
import type { QmpClient } from '../../src/qmp/client.js';
import { QmpError } from '../../src/qmp/error.js';
import { withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;
const S = 1e9;
const settle = () => new Promise<void>((r) => setImmediate(r));

const quiet: BackupListener = { statusChanged: () => undefined, pending: () => undefined, finished: () => undefined, removed: () => undefined, ioError: () => undefined };

describe('VirtualClock', () => {
  it('fires timers in time order when advanced, and not before', async () => {
    const c = new VirtualClock();
    const fired: string[] = [];
    void c.sleep(3 * S).done.then(() => fired.push('c'));
    void c.sleep(1 * S).done.then(() => fired.push('a'));
    void c.sleep(2 * S).done.then(() => fired.push('b'));
    await settle();
    expect(fired).toEqual([]);
    await c.advance(2 * S);
    expect(fired).toEqual(['a', 'b']);
    expect(c.now()).toBe(2 * S);
    await c.advance(10 * S);
    expect(fired).toEqual(['a', 'b', 'c']);
    expect(c.now()).toBe(12 * S);
  });

  it('a woken sleep ends at once and its timer is gone', async () => {
    const c = new VirtualClock();
    const s = c.sleep(5 * S);
    s.wake();
    await s.done;
    expect(c.pendingTimers).toBe(0);
    expect(c.now()).toBe(0);
  });

  it('auto-advances to the earliest timer only while the idle test says nothing else can run', async () => {
    let idle = false;
    const c = new VirtualClock(() => idle);
    const s = c.sleep(7 * S);
    await settle();
    await settle();
    expect(c.now()).toBe(0);
    idle = true;
    c.poke();
    await s.done;
    expect(c.now()).toBe(7 * S);
  });
});

async function nullPair(size: number) {
  const g = new BlockGraph();
  const src = await openBlockdev(g, { driver: 'null-co', 'node-name': 'src', size });
  const tgt = await openBlockdev(g, { driver: 'null-co', 'node-name': 'tgt', size });
  return { src, tgt };
}

describe('a rate-limited backup on a hand-driven virtual clock', () => {
  it('copies at the asked rate within 5%, and a new speed applies at once', async () => {
    const clock = new VirtualClock();
    const { src, tgt } = await nullPair(64 * MiB);
    const job = new BackupJob('j', quiet, { source: src, target: tgt, sync: 'full', speed: MiB, clock });
    job.start();
    // Let the first task through (QEMU charges a task when it starts), then measure over 4 s.
    for (let i = 0; i < 20; i++) await settle();
    const at0 = job.progressCurrent;
    for (let i = 0; i < 40; i++) {
      await clock.advance(S / 10);
      for (let k = 0; k < 5; k++) await settle();
    }
    const rate = (job.progressCurrent - at0) / 4;
    expect(rate).toBeGreaterThanOrEqual(0.95 * MiB);
    expect(rate).toBeLessThanOrEqual(1.05 * MiB);

    job.setSpeed(4 * MiB);
    for (let i = 0; i < 20; i++) await settle();
    const at1 = job.progressCurrent;
    for (let i = 0; i < 40; i++) {
      await clock.advance(S / 10);
      for (let k = 0; k < 5; k++) await settle();
    }
    const rate2 = (job.progressCurrent - at1) / 4;
    expect(rate2).toBeGreaterThanOrEqual(0.95 * 4 * MiB);
    expect(rate2).toBeLessThanOrEqual(1.05 * 4 * MiB);
    await job.cancel();
  });
});

interface Seen {
  events: Array<{ event: string; data: unknown }>;
  virtualNs: number;
}

/** A 64 MiB backup at `speed` on a daemon with the given clock; its job's events, and the virtual time it took. */
async function backupRun(clock: 'real' | 'virtual', speed: number): Promise<Seen> {
  const d = await startDaemon({
    clock,
    blockdevs: [
      { driver: 'null-co', 'node-name': 'src', size: 64 * MiB },
      { driver: 'null-co', 'node-name': 'tgt', size: 64 * MiB },
    ],
  });
  try {
    const c: QmpClient = await d.client();
    const t0 = (await c.execute<{ ns: number }>('__org.blockemu_query-clock')).ns;
    await c.execute('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', speed });
    await c.waitForEvent('JOB_STATUS_CHANGE', (e) => (e.data as { status: string }).status === 'null', 60_000);
    const t1 = (await c.execute<{ ns: number }>('__org.blockemu_query-clock')).ns;
    return { events: c.takeEvents().map((e) => ({ event: e.event, data: e.data })), virtualNs: t1 - t0 };
  } finally {
    await d.close();
  }
}

describe('the daemon on --clock virtual', () => {
  it('runs a 64 MiB backup at 1 MiB/s in 64 virtual seconds, with the events of a real-time run', async () => {
    const virtual = await backupRun('virtual', MiB);
    expect(virtual.virtualNs / S).toBeGreaterThan(60.8);
    expect(virtual.virtualNs / S).toBeLessThan(67.2);
    // The same job in real time, at a speed that takes about a second: only `speed` may differ.
    const real = await backupRun('real', 64 * MiB);
    const strip = (s: Seen) => s.events.map((e) => ({ ...e, data: { ...(e.data as object), speed: undefined } }));
    expect(strip(virtual)).toEqual(strip(real));
    expect(virtual.events.map((e) => e.event)).toContain('BLOCK_JOB_COMPLETED');
  }, 60_000);

  it('mid-job, progress agrees with virtual time: what the rate limiter lets through by then, no more and no less', async () => {
    await withTempDir(async (dir) => {
      // Files, so each copy takes real time while the clock may not move.
      await writeFile(join(dir, 's.raw'), randomBytes(16 * MiB));
      await writeFile(join(dir, 't.raw'), new Uint8Array(16 * MiB));
      const raw = (name: string, f: string) => ({ driver: 'raw', 'node-name': name, file: { driver: 'file', filename: join(dir, f) } });
      const d = await startDaemon({ clock: 'virtual', blockdevs: [raw('src', 's.raw'), raw('tgt', 't.raw')] });
      try {
        const c = await d.client();
        const clock = async () => (await c.execute<{ ns: number }>('__org.blockemu_query-clock')).ns;
        const t0 = await clock();
        await c.execute('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', speed: MiB });
        // 1 MiB tasks at 1 MiB/s: each overruns its 100 ms slice's quota, stretching it to a second,
        // so task k starts at k s (QEMU's ratelimit_calculate_delay); by virtual time t the limiter has let
        // through floor(t) + 1 tasks, and those before the last have ended (the clock moved past their start).
        const allowed = (ns: number) => Math.min(16, Math.floor((ns - t0) / S) + 1) * MiB;
        const samples: Array<{ from: number; to: number; offset: number }> = [];
        for (;;) {
          const from = await clock();
          const jobs = await c.execute<Array<{ offset: number }>>('query-block-jobs');
          const to = await clock();
          if (jobs.length === 0) break;
          samples.push({ from, to, offset: jobs[0]!.offset });
        }
        const mid = samples.filter((x) => x.offset > 0 && x.offset < 16 * MiB);
        expect(new Set(mid.map((x) => x.offset)).size).toBeGreaterThanOrEqual(2);
        for (const x of samples) {
          expect(x.offset, `at ${(x.to - t0) / S} s`).toBeLessThanOrEqual(allowed(x.to));
          expect(x.offset, `at ${(x.from - t0) / S} s`).toBeGreaterThanOrEqual(allowed(x.from - S));
        }
      } finally {
        await d.close();
      }
    });
  }, 60_000);

  it('__org.blockemu_clock-advance moves virtual time; on the real clock it is refused with a reason', async () => {
    const v = await startDaemon({ clock: 'virtual' });
    const r = await startDaemon();
    try {
      const cv = await v.client();
      await cv.execute('__org.blockemu_clock-advance', { ns: 5 * S });
      expect(await cv.execute('__org.blockemu_query-clock')).toEqual({ mode: 'virtual', ns: 5 * S });
      await expect(cv.execute('__org.blockemu_clock-advance', { ns: -1 })).rejects.toThrow("Parameter 'ns' expects a non-negative value");
      const cr = await r.client();
      expect(((await cr.execute('__org.blockemu_query-clock')) as { mode: string }).mode).toBe('real');
      const err = await cr.execute('__org.blockemu_clock-advance', { ns: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QmpError);
      expect((err as QmpError).desc).toMatch(/real clock.*--clock virtual/);
    } finally {
      await v.close();
      await r.close();
    }
  });
});
