/**
 * `npm run bench -- commit`: block-commit of a qcow2 overlay with half of
 * its 64 KiB clusters allocated with random data (every other one) over a
 * base of the same size (the other half allocated), on blockemu's daemon
 * and on qemu-storage-daemon started with the same command line and driven
 * by the same QMP session:
 * - `commit`: the overlay as a middle layer under an empty active layer,
 *   committed into the base by a commit job, which completes by itself —
 *   timed from the command to BLOCK_JOB_COMPLETED;
 * - `active commit`: the overlay as the active layer, committed by a
 *   mirror job of type commit — timed to BLOCK_JOB_READY, then
 *   job-complete until BLOCK_JOB_COMPLETED (the pivot onto the base).
 * Every run gets fresh copies of the images (untimed), one commit per
 * fresh daemon, daemons alternating in order run by run. Reported:
 * medians over `--runs`, the ratio blockemu/qsd, and each daemon's peak
 * RSS (VmHWM, read before it exits).
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { copyFile, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type BenchContext, intFlag } from './lib/context.js';
import { cpuSeconds, type Daemon, daemons, makeImages, syncDisks, vmHwmMiB, withDaemon } from './lib/daemon-session.js';
import { prefault } from './lib/host-memory.js';
import { qemuImg } from './lib/qemu.js';
import { median, MiB, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'block-commit of a half-allocated 1 GiB qcow2 overlay into its base, as a middle layer and as the active layer, blockemu daemon vs qemu-storage-daemon';
export const flags = {
  size: 'image size in MiB (default 1024)',
};

const CLUSTER = 65536;

interface CommitRun {
  /** Active commit only: the command to BLOCK_JOB_READY. */
  ready?: number;
  total: number;
  /** CPU seconds (all threads, user + system) from the command to the end. */
  cpu: number;
  hwmMiB: number;
}

/** The chain each run starts from: `run-overlay.qcow2` names `run-base.qcow2` (absolute) as its backing file. */
interface Pristine {
  base: string;
  overlay: string;
}

/**
 * The base: every other cluster from the start (makeImages' qcow2). The
 * overlay: random data in the clusters between, written into a sparse raw
 * file, converted to qcow2 (zero areas stay unallocated) and given the
 * base as its backing file without looking at it.
 */
async function makeChain(dir: string, size: number): Promise<Pristine> {
  const { qcow2: base } = await makeImages(dir, size);
  await unlink(join(dir, 'src.raw')).catch(() => undefined);
  const sparse = join(dir, 'odd.raw');
  const fh = await open(sparse, 'w');
  const buf = Buffer.alloc(CLUSTER);
  for (let off = CLUSTER; off < size; off += 2 * CLUSTER) await fh.write(randomFillSync(buf), 0, CLUSTER, off);
  await fh.truncate(size);
  await fh.close();
  const overlay = join(dir, 'overlay.qcow2');
  await qemuImg(['convert', '-q', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${CLUSTER}`, sparse, overlay]);
  await unlink(sparse);
  await qemuImg(['rebase', '-q', '-u', '-f', 'qcow2', '-b', join(dir, 'run-base.qcow2'), '-F', 'qcow2', overlay]);
  return { base, overlay };
}

/** Fresh copies of the chain for one run; for a commit below the active layer, an empty active layer above the overlay. */
async function freshChain(dir: string, p: Pristine, active: boolean): Promise<string> {
  const overlay = join(dir, 'run-overlay.qcow2');
  await copyFile(p.base, join(dir, 'run-base.qcow2'));
  await copyFile(p.overlay, overlay);
  if (active) return overlay;
  const top = join(dir, 'run-top.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', overlay, '-F', 'qcow2', top]);
  return top;
}

async function commitOnce(d: Daemon, dir: string, p: Pristine, active: boolean, size: number): Promise<CommitRun> {
  const image = await freshChain(dir, p, active);
  syncDisks();
  return withDaemon(d, dir, image, 'qcow2', async (q, proc) => {
    prefault(size + 512 * MiB);
    const cpu0 = await cpuSeconds(proc.pid!);
    const t0 = performance.now();
    let ready: number | undefined;
    if (active) {
      await q.call('block-commit', { 'job-id': 'c', device: 'disk0' });
      await q.event('BLOCK_JOB_READY');
      ready = (performance.now() - t0) / 1000;
      await q.call('job-complete', { id: 'c' });
    } else {
      await q.call('block-commit', { 'job-id': 'c', device: 'disk0', top: join(dir, 'run-overlay.qcow2') });
    }
    const done = await q.event('BLOCK_JOB_COMPLETED');
    const total = (performance.now() - t0) / 1000;
    const cpu = (await cpuSeconds(proc.pid!)) - cpu0;
    if (done.error) throw new Error(`${d.name}: commit failed: ${String(done.error)}`);
    // A commit job counts every byte of the range, the mirror only what it copies: the overlay's half.
    const expected = active ? size / 2 : size;
    if (done.offset !== expected) throw new Error(`${d.name}: the commit ended at offset ${String(done.offset)}, not ${expected}`);
    return { ready, total, cpu, hwmMiB: await vmHwmMiB(proc.pid!) };
  });
}

export async function run(ctx: BenchContext): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v qemu-storage-daemon'], { stdio: 'ignore' }).status !== 0) {
    console.log('commit: qemu-storage-daemon is not installed; nothing to compare against');
    return;
  }
  const size = intFlag(ctx, 'size', 1024) * MiB;
  if (size % (2 * CLUSTER) !== 0) throw new Error('--size: a whole number of MiB is a whole number of cluster pairs');
  const both = daemons(ctx);
  await withTempDir(async (dir) => {
    const pristine = await makeChain(dir, size);
    const rows: string[][] = [['commit', 'to ready blockemu', 'qsd', 'ratio', 'to end blockemu', 'qsd', 'ratio', 'CPU blockemu', 'qsd', 'RSS blockemu', 'RSS qsd']];
    for (const active of [false, true]) {
      const res: Record<string, CommitRun[]> = { blockemu: [], qsd: [] };
      for (let r = 0; r < ctx.runs; r++) {
        for (const d of r % 2 === 0 ? both : [...both].reverse()) res[d.name]!.push(await commitOnce(d, dir, pristine, active, size));
      }
      const m = (name: string, k: keyof CommitRun) => median(res[name]!.map((x) => x[k] ?? NaN));
      const ratio = (k: keyof CommitRun) => (m('blockemu', k) / m('qsd', k)).toFixed(2);
      const secs = (name: string, k: keyof CommitRun) => `${m(name, k).toFixed(2)} s`;
      rows.push([
        `${active ? 'active' : 'middle layer'}, ${size / MiB} MiB`,
        ...(active ? [secs('blockemu', 'ready'), secs('qsd', 'ready'), ratio('ready')] : ['—', '—', '—']),
        secs('blockemu', 'total'),
        secs('qsd', 'total'),
        ratio('total'),
        secs('blockemu', 'cpu'),
        secs('qsd', 'cpu'),
        `${m('blockemu', 'hwmMiB').toFixed(0)} MiB`,
        `${m('qsd', 'hwmMiB').toFixed(0)} MiB`,
      ]);
    }
    console.log(`\nblock-commit of a qcow2 overlay (every other 64 KiB cluster, random data) into its base, ${ctx.runs} runs; medians\n`);
    console.log(renderTable(rows, new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])));
  });
}
