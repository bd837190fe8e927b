/**
 * `npm run bench -- mirror`: drive-mirror (sync=full, a new target of the
 * source's format) of a raw image of random data and of a qcow2 image with
 * every other 64 KiB cluster allocated, on blockemu's daemon and on
 * qemu-storage-daemon started with the same command line and driven by the
 * same QMP session: timed from the command to BLOCK_JOB_READY (the bulk
 * copy), then job-complete until BLOCK_JOB_COMPLETED (the pivot). One
 * mirror per fresh daemon, daemons alternating in order run by run.
 * Reported: medians over `--runs`, the ratio blockemu/qsd, the CPU time
 * each daemon spent to READY (user + system, all threads: steadier than
 * the time on a loaded machine), and each daemon's peak RSS (VmHWM, read
 * before it exits).
 */
import { spawnSync } from 'node:child_process';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type BenchContext, intFlag } from './lib/context.js';
import { cpuSeconds, type Daemon, daemons, makeImages, syncDisks, vmHwmMiB, withDaemon } from './lib/daemon-session.js';
import { prefault } from './lib/host-memory.js';
import { median, MiB, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'drive-mirror of raw and half-allocated qcow2 to ready and pivot, blockemu daemon vs qemu-storage-daemon';
export const flags = {
  size: 'image size in MiB (default 1024)',
  formats: 'comma-separated source formats to mirror (default raw,qcow2)',
};

interface MirrorRun {
  ready: number;
  total: number;
  /** CPU seconds the daemon spent from the command to READY. */
  cpu: number;
  hwmMiB: number;
}

async function mirrorOnce(d: Daemon, dir: string, image: string, format: string, size: number): Promise<MirrorRun> {
  return withDaemon(d, dir, image, format, async (q, proc) => {
    const target = join(dir, `mirror-${d.name}.${format}`);
    await unlink(target).catch(() => undefined);
    syncDisks();
    prefault(size + 512 * MiB);
    const cpu0 = await cpuSeconds(proc.pid!);
    const t0 = performance.now();
    await q.call('drive-mirror', { 'job-id': 'm', device: 'disk0', target, format, sync: 'full' });
    await q.event('BLOCK_JOB_READY');
    const ready = (performance.now() - t0) / 1000;
    const cpu = (await cpuSeconds(proc.pid!)) - cpu0;
    await q.call('job-complete', { id: 'm' });
    const done = await q.event('BLOCK_JOB_COMPLETED');
    const total = (performance.now() - t0) / 1000;
    if (done.error) throw new Error(`${d.name}: mirror failed: ${String(done.error)}`);
    const hwmMiB = await vmHwmMiB(proc.pid!);
    await unlink(target).catch(() => undefined);
    return { ready, total, cpu, hwmMiB };
  });
}

export async function run(ctx: BenchContext): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v qemu-storage-daemon'], { stdio: 'ignore' }).status !== 0) {
    console.log('mirror: qemu-storage-daemon is not installed; nothing to compare against');
    return;
  }
  const size = intFlag(ctx, 'size', 1024) * MiB;
  const formats = (ctx.flags.get('formats') ?? 'raw,qcow2').split(',');
  const bad = formats.filter((f) => f !== 'raw' && f !== 'qcow2');
  if (bad.length > 0) throw new Error(`--formats: unknown format ${bad.join(', ')} (raw, qcow2)`);
  const both = daemons(ctx);
  await withTempDir(async (dir) => {
    const images = await makeImages(dir, size);
    const rows: string[][] = [['image', 'to ready blockemu', 'qsd', 'ratio', 'to pivot blockemu', 'qsd', 'ratio', 'CPU to ready blockemu', 'qsd', 'ratio', 'RSS blockemu', 'RSS qsd']];
    for (const format of formats as ('raw' | 'qcow2')[]) {
      const res: Record<string, MirrorRun[]> = { blockemu: [], qsd: [] };
      for (let r = 0; r < ctx.runs; r++) {
        for (const d of r % 2 === 0 ? both : [...both].reverse()) res[d.name]!.push(await mirrorOnce(d, dir, images[format], format, size));
      }
      const m = (name: string, k: keyof MirrorRun) => median(res[name]!.map((x) => x[k]));
      rows.push([
        `${format} ${size / MiB} MiB`,
        `${m('blockemu', 'ready').toFixed(2)} s`,
        `${m('qsd', 'ready').toFixed(2)} s`,
        (m('blockemu', 'ready') / m('qsd', 'ready')).toFixed(2),
        `${m('blockemu', 'total').toFixed(2)} s`,
        `${m('qsd', 'total').toFixed(2)} s`,
        (m('blockemu', 'total') / m('qsd', 'total')).toFixed(2),
        `${m('blockemu', 'cpu').toFixed(2)} s`,
        `${m('qsd', 'cpu').toFixed(2)} s`,
        (m('blockemu', 'cpu') / m('qsd', 'cpu')).toFixed(2),
        `${m('blockemu', 'hwmMiB').toFixed(0)} MiB`,
        `${m('qsd', 'hwmMiB').toFixed(0)} MiB`,
      ]);
    }
    console.log(`\ndrive-mirror sync=full, ${ctx.runs} runs (qcow2: every other 64 KiB cluster allocated); medians\n`);
    console.log(renderTable(rows, new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])));
  });
}
