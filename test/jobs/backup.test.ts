import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { BackupJob, type BackupListener, MAX_TASKS } from '../../src/jobs/backup.js';
import { errorAction } from '../../src/jobs/error-policy.js';
import { qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;

function pattern(size: number, seed: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed * 17 + (i >> 12)) & 0xff;
  return b;
}

function recorder(): { log: string[]; listener: BackupListener } {
  const log: string[] = [];
  return {
    log,
    listener: {
      statusChanged: (j) => log.push(j.status),
      pending: () => log.push('PENDING'),
      finished: (j, cancelled) => log.push(`${cancelled ? 'CANCELLED' : 'COMPLETED'}${j.error ? `(${j.error})` : ''} ${j.progressCurrent}/${j.progressTotal}`),
      removed: () => undefined,
      ioError: (_j, op, action) => log.push(`ERROR ${op} ${action}`),
    },
  };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function setup(dir: string, size: number, srcRules?: Record<string, unknown>, tgtRules?: Record<string, unknown>) {
  const original = pattern(size, 1);
  await writeFile(join(dir, 'src.raw'), original);
  await writeFile(join(dir, 'tgt.raw'), new Uint8Array(size));
  const g = new BlockGraph();
  const file = (name: string, rules?: Record<string, unknown>) =>
    rules ? { driver: 'blkdebug', image: { driver: 'file', filename: join(dir, name) }, ...rules } : { driver: 'file', filename: join(dir, name) };
  const src = await openBlockdev(g, { driver: 'raw', 'node-name': 'src', file: file('src.raw', srcRules) });
  const tgt = await openBlockdev(g, { driver: 'raw', 'node-name': 'tgt', file: file('tgt.raw', tgtRules) });
  return { g, src, tgt, original };
}

describe('backup job (library level)', () => {
  it('sync=full copies the source as it was at job start, while the guest keeps writing', async () => {
    await withTempDir(async (dir) => {
      const { g, src, tgt, original } = await setup(dir, 8 * MiB);
      const { log, listener } = recorder();
      const job = new BackupJob('j0', listener, { source: src, target: tgt, sync: 'full', speed: 8 * MiB });
      job.start();
      // Guest writes all over the disk while the throttled copy runs.
      for (let i = 0; i < 32; i++) await src.write(((i * 7) % 32) * 256 * 1024 + 100, new Uint8Array(5000).fill(0xee));
      job.setSpeed(0);
      await until(() => job.status === 'null');
      expect(log.at(-3)).toBe(`COMPLETED ${8 * MiB}/${8 * MiB}`);
      await g.closeAll();
      expect(Buffer.compare(await readFile(join(dir, 'tgt.raw')), Buffer.from(original))).toBe(0);
    });
  });

  it('a sparse raw source gives a sparse target: zeroes read from it are written as zeroes', async () => {
    await withTempDir(async (dir) => {
      const size = 16 * MiB;
      const data = pattern(MiB, 3);
      await writeFile(join(dir, 'src.raw'), new Uint8Array(0));
      await truncate(join(dir, 'src.raw'), size);
      await writeFile(join(dir, 'tgt.raw'), new Uint8Array(0));
      await truncate(join(dir, 'tgt.raw'), size);
      const g = new BlockGraph();
      const src = await openBlockdev(g, { driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: join(dir, 'src.raw') } });
      await src.write(MiB, data);
      await src.write(9 * MiB, data);
      const tgt = await openBlockdev(g, { driver: 'raw', 'node-name': 'tgt', file: { driver: 'file', filename: join(dir, 'tgt.raw') } });
      const { listener } = recorder();
      const job = new BackupJob('z', listener, { source: src, target: tgt, sync: 'full' });
      job.start();
      await until(() => job.status === 'null');
      await g.closeAll();
      expect(Buffer.compare(await readFile(join(dir, 'tgt.raw')), await readFile(join(dir, 'src.raw')))).toBe(0);
      // Two MiB of data; the 14 MiB of holes stay holes (a copy of everything would allocate 16 MiB).
      expect((await stat(join(dir, 'tgt.raw'))).blocks * 512).toBeLessThanOrEqual(3 * MiB);
    });
  });

  it('the error policies: report fails the job, ignore retries, stop pauses until resumed', async () => {
    await withTempDir(async (dir) => {
      // report
      {
        const { g, src, tgt } = await setup(dir, 4 * MiB, { 'inject-error': [{ event: 'read_aio', errno: 5, once: true, iotype: 'read' }] });
        const { log, listener } = recorder();
        const job = new BackupJob('r', listener, { source: src, target: tgt, sync: 'full' });
        job.start();
        await until(() => job.status === 'null');
        expect(log).toContain('ERROR read report');
        expect(log.find((l) => l.startsWith('COMPLETED'))).toMatch(/^COMPLETED\(Input\/output error\) /);
        await g.closeAll();
      }
      // ignore: a transient error is retried and the job succeeds
      {
        const { g, src, tgt, original } = await setup(dir, 4 * MiB, undefined, { 'inject-error': [{ event: 'write_aio', errno: 5, once: true, iotype: 'write' }] });
        const { log, listener } = recorder();
        const job = new BackupJob('i', listener, { source: src, target: tgt, sync: 'full', onTargetError: 'ignore' });
        job.start();
        await until(() => job.status === 'null');
        expect(log).toContain('ERROR write ignore');
        expect(log).toContain(`COMPLETED ${4 * MiB}/${4 * MiB}`);
        await g.closeAll();
        expect(Buffer.compare(await readFile(join(dir, 'tgt.raw')), Buffer.from(original))).toBe(0);
      }
      // enospc on a target ENOSPC: stop, io-status nospace, resume retries
      {
        const { g, src, tgt } = await setup(dir, 4 * MiB, undefined, { 'inject-error': [{ event: 'write_aio', errno: 28, once: true, iotype: 'write' }] });
        const { log, listener } = recorder();
        const job = new BackupJob('s', listener, { source: src, target: tgt, sync: 'full', onTargetError: 'enospc' });
        job.start();
        await until(() => job.status === 'paused');
        expect(log).toContain('ERROR write stop');
        expect(job.ioStatus).toBe('nospace');
        expect(job.userPaused).toBe(true);
        job.userResume();
        expect(job.ioStatus).toBe('ok');
        await until(() => job.status === 'null');
        expect(log).toContain(`COMPLETED ${4 * MiB}/${4 * MiB}`);
        await g.closeAll();
      }
    });
  });

  it('cancel stops the copy: CANCELLED with the bytes done so far; the source is released', async () => {
    await withTempDir(async (dir) => {
      const { g, src, tgt } = await setup(dir, 8 * MiB);
      const { log, listener } = recorder();
      const job = new BackupJob('c', listener, { source: src, target: tgt, sync: 'full', speed: 1 * MiB });
      job.start();
      await new Promise((r) => setTimeout(r, 50));
      await job.cancel();
      expect(log.find((l) => l.startsWith('CANCELLED'))).toMatch(/^CANCELLED\(Operation canceled\) \d+\/8388608$/);
      expect(src.beforeWrite).toHaveLength(0);
      expect(src.inUse).toBe(false);
      await g.closeAll();
    });
  });

  it('sync=none copies only what the guest overwrites', async () => {
    await withTempDir(async (dir) => {
      const { g, src, tgt, original } = await setup(dir, 4 * MiB);
      const { listener } = recorder();
      const job = new BackupJob('n', listener, { source: src, target: tgt, sync: 'none' });
      job.start();
      await src.write(MiB + 10, new Uint8Array(10).fill(1));
      expect(job.progressCurrent).toBe(65536);
      await job.cancel();
      await g.closeAll();
      const t = await readFile(join(dir, 'tgt.raw'));
      expect(Buffer.compare(t.subarray(MiB, MiB + 65536), Buffer.from(original.subarray(MiB, MiB + 65536)))).toBe(0);
      expect(t.subarray(0, MiB).every((b) => b === 0)).toBe(true);
    });
  });

  it('copies with parallel tasks, each cluster once, progress counting every byte once, also under guest writes', async () => {
    await withTempDir(async (dir) => {
      const { g, src, tgt, original } = await setup(dir, 32 * MiB);
      const { log, listener } = recorder();
      // Writes reaching the target: how many at once, and how many bytes in all.
      let inFlight = 0;
      let peak = 0;
      let written = 0;
      tgt.beforeWrite.push(async (_off, len) => {
        peak = Math.max(peak, ++inFlight);
        written += len;
        await new Promise((r) => setImmediate(r));
        inFlight--;
      });
      const job = new BackupJob('p', listener, { source: src, target: tgt, sync: 'full', maxChunk: 256 * 1024 });
      job.start();
      const guest = [];
      for (let i = 0; i < 64; i++) guest.push(src.write(((i * 13) % 128) * 256 * 1024 + 4000, new Uint8Array(70_000).fill(0xab)));
      await Promise.all(guest);
      await until(() => job.status === 'null');
      expect(peak).toBeGreaterThan(1);
      expect(peak).toBeLessThanOrEqual(MAX_TASKS + 64);
      expect(written).toBe(32 * MiB);
      expect(log.at(-3)).toBe(`COMPLETED ${32 * MiB}/${32 * MiB}`);
      await g.closeAll();
      expect(Buffer.compare(await readFile(join(dir, 'tgt.raw')), Buffer.from(original))).toBe(0);
    });
  });

  it('a pause parks the job only after its copies in flight are done, even from a rate-limit sleep, and it is busy until then', async () => {
    await withTempDir(async (dir) => {
      const { g, src, tgt } = await setup(dir, 8 * MiB);
      // The target's first write waits until released, so the first task is in flight when the pause comes.
      const stall = g.faults.add(tgt.child('file')!, { type: 'stall', iotype: 'write', count: 1 });
      const { log, listener } = recorder();
      const atPause: Array<{ inFlight: boolean; busy: boolean }> = [];
      const job = new BackupJob('p', { ...listener, statusChanged: (j) => (log.push(j.status), j.status === 'paused' && atPause.push({ inFlight: job.copier.busy, busy: job.busy })) }, { source: src, target: tgt, sync: 'full', speed: 64 * 1024 });
      job.start();
      await until(() => job.copier.busy);
      job.userPause();
      await new Promise((r) => setTimeout(r, 20));
      // Asked to pause but still copying: QEMU's backup_pause waits for its copies, busy, not yet paused.
      expect([job.status, job.busy]).toEqual(['running', true]);
      g.faults.release(stall);
      await until(() => job.status === 'paused');
      expect(atPause.length).toBeGreaterThan(0);
      for (const p of atPause) expect(p).toEqual({ inFlight: false, busy: false });
      const offset = job.progressCurrent;
      expect(offset).toBe(MiB);
      await new Promise((r) => setTimeout(r, 100));
      expect(job.progressCurrent).toBe(offset);
      job.requestCancel(true);
      await until(() => job.status === 'null');
      await g.closeAll();
    });
  });

  // Clusters 0, 2, 1 written in that order lie apart in the qcow2 file: three extents in the first 1 MiB task.
  // The second data read fails (blkdebug's state machine, as iotest 257 sets it up).
  async function scattered(dir: string) {
    await qemuImg('create', '-f', 'qcow2', join(dir, 's.qcow2'), '4M');
    for (const c of [0, 2, 1]) await qemuIo('-f', 'qcow2', '-c', `write -P ${c + 1} ${c * 65536} 64k`, join(dir, 's.qcow2'));
    await writeFile(join(dir, 'tgt.raw'), new Uint8Array(4 * MiB));
    const g = new BlockGraph();
    const rules = {
      'set-state': [{ event: 'read_aio', state: 1, new_state: 2 }],
      'inject-error': [{ event: 'read_aio', errno: 5, state: 2, once: true, immediately: false }],
    };
    const src = await openBlockdev(g, { driver: 'qcow2', 'node-name': 'src', file: { driver: 'blkdebug', image: { driver: 'file', filename: join(dir, 's.qcow2') }, ...rules } });
    const tgt = await openBlockdev(g, { driver: 'raw', 'node-name': 'tgt', file: { driver: 'file', filename: join(dir, 'tgt.raw') } });
    return { g, src, tgt };
  }

  it('one worker copies a task extent by extent and stops at the first failed one, as QEMU with max-workers=1', async () => {
    await withTempDir(async (dir) => {
      const { g, src, tgt } = await scattered(dir);
      const { log, listener } = recorder();
      const job = new BackupJob('one', listener, { source: src, target: tgt, sync: 'full', maxWorkers: 1 });
      job.start();
      await until(() => job.status === 'null');
      // Cluster 0 was copied; cluster 1 failed and cluster 2 was never read.
      expect(log.find((l) => l.startsWith('COMPLETED'))).toBe(`COMPLETED(Input/output error) 65536/${4 * MiB}`);
      expect(job.copier.bitmap.count).toBe(64 - 1);
      await g.closeAll();
      const tgtData = await readFile(join(dir, 'tgt.raw'));
      expect(tgtData.subarray(0, 65536).every((b) => b === 1)).toBe(true);
      expect(tgtData.subarray(131072, 196608).every((b) => b === 0)).toBe(true);
    });
  });

  it('parallel extents of a task that did not fail are copied and counted', async () => {
    await withTempDir(async (dir) => {
      const { g, src, tgt } = await scattered(dir);
      const { log, listener } = recorder();
      const job = new BackupJob('par', listener, { source: src, target: tgt, sync: 'full' });
      job.start();
      await until(() => job.status === 'null');
      // Only cluster 1 stays to copy; everything else of the image (the other tasks ran alongside) was copied.
      expect(log.find((l) => l.startsWith('COMPLETED'))).toBe(`COMPLETED(Input/output error) ${4 * MiB - 65536}/${4 * MiB}`);
      expect(job.copier.bitmap.count).toBe(1);
      await g.closeAll();
      const tgtData = await readFile(join(dir, 'tgt.raw'));
      expect(tgtData.subarray(131072, 196608).every((b) => b === 3)).toBe(true);
    });
  });

  it('with parallel tasks the first error wins and the tasks in flight finish', async () => {
    await withTempDir(async (dir) => {
      const { g, src, tgt } = await setup(dir, 32 * MiB, undefined, { 'inject-error': [{ event: 'write_aio', errno: 5, once: true, iotype: 'write' }] });
      const { log, listener } = recorder();
      const job = new BackupJob('e', listener, { source: src, target: tgt, sync: 'full' });
      job.start();
      await until(() => job.status === 'null');
      // One error event; the MAX_TASKS - 1 other 1 MiB tasks started with the failed one completed and counted.
      expect(log.filter((l) => l.startsWith('ERROR'))).toEqual(['ERROR write report']);
      expect(log.find((l) => l.startsWith('COMPLETED'))).toBe(`COMPLETED(Input/output error) ${(MAX_TASKS - 1) * MiB}/${32 * MiB}`);
      expect(job.copier.busy).toBe(false);
      expect(job.copier.bitmap.count).toBe((32 - (MAX_TASKS - 1)) * 16);
      await g.closeAll();
    });
  });

  it('policy table', () => {
    expect(errorAction('enospc', 'ENOSPC')).toBe('stop');
    expect(errorAction('enospc', 'EIO')).toBe('report');
    expect(errorAction('auto', 'ENOSPC')).toBe('stop');
    expect(errorAction('ignore', 'EIO')).toBe('ignore');
  });
});
