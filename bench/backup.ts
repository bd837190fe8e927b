/**
 * `npm run bench -- backup`: a full drive-backup of a raw image and of a
 * qcow2 image with every other 64 KiB cluster allocated (random data), on
 * blockemu's daemon and on qemu-storage-daemon started with the same
 * command line and driven by the same QMP session (drive-backup to a fresh
 * target of the source's format, timed until BLOCK_JOB_COMPLETED), and
 * `cp` of the same file in the same run. Each daemon makes two backups in
 * a row: the first in a fresh process (cold: blockemu's JavaScript is still
 * being compiled by V8, which costs it 0.1-0.3 s of a sub-second backup;
 * qsd has nothing to warm), the second in the same process (warm: what a
 * daemon that has been serving for a while does). Reported: median times
 * over `--runs`, the ratios blockemu/qsd for both and blockemu/cp for the
 * warm one, each daemon's peak RSS
 * (VmHWM from /proc/<pid>/status, read before it exits), the size the
 * target takes on disk, and the latency of a guest's 4 KiB writes. On a
 * VM that reports freed memory to its host, each timed run is preceded by
 * touching the memory it will allocate (lib/host-memory.ts): otherwise a
 * run that lands on reported pages pays host faults, 0.5-2 s of noise.
 *
 * Guest write latency: qsd 7.2 has no human-monitor-command, so the same
 * writer cannot run inside it; rather than compare a qemu-io over NBD (a
 * socket and a second process in the path) with an in-process writer, we
 * report blockemu's own 4 KiB write latency through HMP `qemu-io` with a
 * backup running (every write copies its cluster first) against the same
 * writes with no job. Writes go to the image's last 64 MiB, which the
 * background copy reaches last, so they do pay copy-before-write.
 */
import { spawn, spawnSync } from 'node:child_process';
import { stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { intFlag, type BenchContext } from './lib/context.js';
import { prefault, reportedKiB } from './lib/host-memory.js';
import { type Daemon, daemons as daemonsOf, makeImages, syncDisks, vmHwmMiB, withDaemon } from './lib/daemon-session.js';
import { median, MiB, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'full drive-backup of raw and half-allocated qcow2, blockemu daemon vs qemu-storage-daemon vs cp';
export const flags = {
  size: 'image size in MiB (default 1024)',
  writes: 'guest 4 KiB writes per latency run (default 200; 0 skips the latency runs)',
  formats: 'comma-separated source formats to back up (default raw,qcow2)',
};




interface BackupRun {
  /** The first backup of a fresh daemon. */
  cold: number;
  /** The second, in the same daemon. */
  seconds: number;
  hwmMiB: number;
  targetMiB: number;
}



/** Memory a backup or cp allocates besides the target's page cache (the source's file size): the daemon's heap and buffers. */
const PREFAULT_SLACK = 512 * MiB;

async function backupOnce(d: Daemon, dir: string, image: string, format: string): Promise<BackupRun> {
  const fileSize = (await stat(image)).size;
  return withDaemon(d, dir, image, format, async (q, proc) => {
    const one = async (k: number) => {
      const target = join(dir, `target-${d.name}-${k}.${format}`);
      await unlink(target).catch(() => undefined);
      // Each backup starts with nothing left to write back (an earlier run's or cp's target): a timing, not a race with the disk.
      syncDisks();
      prefault(fileSize + PREFAULT_SLACK);
      const t0 = performance.now();
      await q.call('drive-backup', { 'job-id': `b${k}`, device: 'disk0', target, format, sync: 'full' });
      const done = await q.event('BLOCK_JOB_COMPLETED');
      const seconds = (performance.now() - t0) / 1000;
      if (done.error) throw new Error(`${d.name}: backup failed: ${String(done.error)}`);
      return { seconds, target };
    };
    const cold = await one(0);
    await unlink(cold.target);
    const warm = await one(1);
    const hwmMiB = await vmHwmMiB(proc.pid!);
    const st = await stat(warm.target);
    await unlink(warm.target);
    return { cold: cold.seconds, seconds: warm.seconds, hwmMiB, targetMiB: (st.blocks * 512) / MiB };
  });
}


async function cpOnce(dir: string, image: string): Promise<number> {
  const dst = join(dir, 'cp-target');
  await unlink(dst).catch(() => undefined);
  syncDisks();
  prefault((await stat(image)).size + PREFAULT_SLACK);
  const t0 = performance.now();
  await new Promise<void>((res, rej) => {
    const p = spawn('cp', [image, dst], { stdio: 'inherit' });
    p.once('exit', (c) => (c === 0 ? res() : rej(new Error(`cp exited ${c}`))));
  });
  const seconds = (performance.now() - t0) / 1000;
  await unlink(dst);
  return seconds;
}

/** Median 4 KiB HMP qemu-io write latency in the image's last 64 MiB, with a backup running or not. */
async function latencyMs(d: Daemon, dir: string, image: string, format: string, size: number, writes: number, withJob: boolean): Promise<number> {
  const target = join(dir, `lat-target.${format}`);
  await unlink(target).catch(() => undefined);
  return withDaemon(d, dir, image, format, async (q) => {
    if (withJob) await q.call('drive-backup', { 'job-id': 'b', device: 'disk0', target, format, sync: 'full' });
    const area = Math.min(64 * MiB, size);
    const times: number[] = [];
    for (let i = 0; i < writes; i++) {
      const off = size - area + ((i * 65536 * 7) % area);
      const t0 = performance.now();
      await q.call('human-monitor-command', { 'command-line': `qemu-io disk0 "write -P 7 ${off} 4k"` });
      times.push(performance.now() - t0);
    }
    if (withJob) await q.event('BLOCK_JOB_COMPLETED');
    return median(times);
  });
}


export async function run(ctx: BenchContext): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v qemu-storage-daemon'], { stdio: 'ignore' }).status !== 0) {
    console.log('backup: qemu-storage-daemon is not installed; nothing to compare against');
    return;
  }
  const size = intFlag(ctx, 'size', 1024) * MiB;
  const writes = intFlag(ctx, 'writes', 200, 0);
  const formats = (ctx.flags.get('formats') ?? 'raw,qcow2').split(',');
  const bad = formats.filter((f) => f !== 'raw' && f !== 'qcow2');
  if (bad.length > 0) throw new Error(`--formats: unknown format ${bad.join(', ')} (raw, qcow2)`);
  const daemons = daemonsOf(ctx);
  await withTempDir(async (dir) => {
    const images = await makeImages(dir, size);
    const times: string[][] = [['image', 'backup', 'blockemu', 'qsd', 'blockemu/qsd', 'best blockemu', 'best qsd', 'best ratio']];
    const other: string[][] = [['image', 'cp', 'blockemu warm/cp', 'RSS blockemu', 'RSS qsd', 'target blockemu', 'target qsd']];
    const reclaimed0 = reportedKiB();
    for (const format of formats as ('raw' | 'qcow2')[]) {
      const image = images[format];
      const res: Record<string, BackupRun[]> = { blockemu: [], qsd: [] };
      const cp: number[] = [];
      for (let r = 0; r < ctx.runs; r++) {
        for (const d of r % 2 === 0 ? daemons : [...daemons].reverse()) res[d.name]!.push(await backupOnce(d, dir, image, format));
        cp.push(await cpOnce(dir, image));
      }
      const m = (name: string, k: keyof BackupRun) => median(res[name]!.map((x) => x[k]));
      const best = (name: string, k: keyof BackupRun) => Math.min(...res[name]!.map((x) => x[k]));
      for (const [label, k] of [['warm', 'seconds'], ['cold', 'cold']] as const) {
        const [b, q, bb, bq] = [m('blockemu', k), m('qsd', k), best('blockemu', k), best('qsd', k)];
        times.push([`${format} ${size / MiB} MiB`, label, `${b.toFixed(2)} s`, `${q.toFixed(2)} s`, (b / q).toFixed(2), `${bb.toFixed(2)} s`, `${bq.toFixed(2)} s`, (bb / bq).toFixed(2)]);
      }
      const c = median(cp);
      other.push([
        `${format} ${size / MiB} MiB`,
        `${c.toFixed(2)} s`,
        (m('blockemu', 'seconds') / c).toFixed(2),
        `${m('blockemu', 'hwmMiB').toFixed(0)} MiB`,
        `${m('qsd', 'hwmMiB').toFixed(0)} MiB`,
        `${m('blockemu', 'targetMiB').toFixed(0)} MiB`,
        `${m('qsd', 'targetMiB').toFixed(0)} MiB`,
      ]);
    }
    const reclaimed = reclaimed0 === undefined ? undefined : (reportedKiB() ?? reclaimed0) - reclaimed0;
    console.log(`\nfull drive-backup, ${ctx.runs} runs (qcow2: every other 64 KiB cluster allocated); warm: a daemon's second backup, cold: its first; medians and best of the runs\n`);
    console.log(renderTable(times, new Set([2, 3, 4, 5, 6, 7])));
    console.log();
    console.log(renderTable(other, new Set([1, 2, 3, 4, 5, 6])));
    if (reclaimed !== undefined) {
      console.log(
        `\nthe host took back ${(reclaimed / 1024).toFixed(0)} MiB of freed guest memory meanwhile (virtio-balloon free page reporting); ` +
          'every timed run was preceded by touching its page cache and heap worth of memory, so it did not pay host faults for it',
      );
    }

    if (writes === 0) return;
    const lat: string[][] = [['image', 'no job (ms)', 'backup running (ms)', 'ratio']];
    for (const format of formats as ('raw' | 'qcow2')[]) {
      const idle: number[] = [];
      const busy: number[] = [];
      for (let r = 0; r < ctx.runs; r++) {
        idle.push(await latencyMs(daemons[0]!, dir, images[format], format, size, writes, false));
        busy.push(await latencyMs(daemons[0]!, dir, images[format], format, size, writes, true));
      }
      const i = median(idle);
      const bz = median(busy);
      lat.push([format, i.toFixed(2), bz.toFixed(2), (bz / i).toFixed(2)]);
    }
    console.log(`\nblockemu guest write latency: median of ${writes} × 4 KiB HMP qemu-io writes (QMP round trip included)\n`);
    console.log(renderTable(lat, new Set([1, 2, 3])));
  });
}
