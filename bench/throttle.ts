/**
 * `npm run bench -- throttle`: a throttle node (throttle-group object,
 * throttle → raw → file) exported over NBD on blockemu's daemon and on
 * qemu-storage-daemon, driven by `qemu-img bench` through the export for
 * about `--seconds` of throttled I/O: 64 KiB writes under a bps limit, and
 * 4 KiB reads at queue depth 8 under an iops limit. Reported: the rate
 * each daemon let through against the limit (the target is within 5%;
 * the first 0.1 s bucket passes unthrottled in QEMU's algorithm, so a
 * run sits slightly above it) and blockemu's time over qsd's.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { type BenchContext, intFlag } from './lib/context.js';
import { type Daemon, daemons, withDaemon } from './lib/daemon-session.js';
import { median, MiB, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'throttled NBD workloads (bps and iops limits): the rate let through against the limit, blockemu vs qemu-storage-daemon';
export const flags = { seconds: 'throttled seconds per workload (default 4)' };

interface Workload {
  name: string;
  limits: Record<string, number>;
  /** qemu-img bench arguments besides the image. */
  args: (count: number) => string[];
  count: (seconds: number) => number;
  /** What the limit counts per request. */
  unitsPerRequest: number;
  limit: number;
  unit: string;
}

const BPS = 32 * MiB;
const IOPS = 500;

const WORKLOADS: Workload[] = [
  {
    name: 'writes 64 KiB, bps-total 32 MiB/s',
    limits: { 'bps-total': BPS },
    // A pattern, not zeroes: blockemu finds holes by reading (Node has no SEEK_HOLE), and the reads below must find data.
    args: (n) => ['-w', '--pattern=165', '-c', String(n), '-s', '65536', '-d', '1'],
    count: (s) => Math.round((BPS * s) / 65536),
    unitsPerRequest: 65536,
    limit: BPS,
    unit: 'MiB/s',
  },
  {
    name: 'reads 4 KiB depth 8, iops-total 500',
    limits: { 'iops-total': IOPS },
    args: (n) => ['-c', String(n), '-s', '4096', '-d', '8'],
    count: (s) => IOPS * s,
    unitsPerRequest: 1,
    limit: IOPS,
    unit: 'IOPS',
  },
];

function qemuImgBench(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('qemu-img', ['bench', '-f', 'raw', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`qemu-img bench exited ${code}`))));
  });
}

async function throttledOnce(d: Daemon, dir: string, image: string, w: Workload, seconds: number): Promise<number> {
  return withDaemon(d, dir, image, 'raw', async (q) => {
    const sock = join(dir, `${d.name}-nbd.sock`);
    await q.call('object-add', { 'qom-type': 'throttle-group', id: 'tg0', limits: w.limits });
    await q.call('blockdev-add', { driver: 'throttle', 'node-name': 'th', 'throttle-group': 'tg0', file: 'disk0' });
    await q.call('nbd-server-start', { addr: { type: 'unix', data: { path: sock } } });
    await q.call('block-export-add', { type: 'nbd', id: 'e', 'node-name': 'th', writable: true });
    const count = w.count(seconds);
    const t0 = performance.now();
    await qemuImgBench([...w.args(count), `nbd+unix:///th?socket=${sock}`]);
    const secs = (performance.now() - t0) / 1000;
    return (count * w.unitsPerRequest) / secs;
  });
}

export async function run(ctx: BenchContext): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v qemu-storage-daemon'], { stdio: 'ignore' }).status !== 0) {
    console.log('throttle: qemu-storage-daemon is not installed; nothing to compare against');
    return;
  }
  const seconds = intFlag(ctx, 'seconds', 4);
  const both = daemons(ctx);
  await withTempDir(async (dir) => {
    // Data, not holes: an NBD read of a hole is answered from block status without reading, so no limit would apply to it.
    const image = join(dir, 'disk.raw');
    const fh = await open(image, 'w');
    const chunk = randomFillSync(Buffer.alloc(MiB));
    for (let off = 0; off < 256 * MiB; off += MiB) await fh.write(chunk, 0, MiB, off);
    await fh.close();
    const rows: string[][] = [['workload', 'limit', 'blockemu', 'of limit', 'qsd', 'of limit', 'time blockemu/qsd']];
    for (const w of WORKLOADS) {
      const res: Record<string, number[]> = { blockemu: [], qsd: [] };
      for (let r = 0; r < ctx.runs; r++) {
        for (const d of r % 2 === 0 ? both : [...both].reverse()) res[d.name]!.push(await throttledOnce(d, dir, image, w, seconds));
      }
      const scale = w.unit === 'MiB/s' ? MiB : 1;
      const rate = (name: string) => median(res[name]!);
      const fmt = (v: number) => `${(v / scale).toFixed(w.unit === 'MiB/s' ? 2 : 1)} ${w.unit}`;
      rows.push([
        w.name,
        fmt(w.limit),
        fmt(rate('blockemu')),
        `${((rate('blockemu') / w.limit) * 100).toFixed(1)} %`,
        fmt(rate('qsd')),
        `${((rate('qsd') / w.limit) * 100).toFixed(1)} %`,
        (rate('qsd') / rate('blockemu')).toFixed(3),
      ]);
    }
    console.log(`\nthrottled I/O through an NBD export of a throttle node (qemu-img bench), ~${seconds} s per run, ${ctx.runs} runs; medians\n`);
    console.log(renderTable(rows, new Set([1, 2, 3, 4, 5, 6])));
  });
}
