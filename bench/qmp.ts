/**
 * `npm run bench -- qmp`: QMP round-trip latency of query-named-block-nodes
 * on blockemu's daemon and on qemu-storage-daemon, started with the same
 * command line (a raw and a qcow2 node) in the same run, driven by the
 * same minimal client: one request in flight, the next sent when the
 * reply's line arrives. Median and p99 per daemon, and the ratio
 * blockemu/qemu (target: at or below 1). Runs alternate which daemon goes
 * first; the reported figure is the median over runs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { type BenchContext, intFlag } from './lib/context.js';
import { BLOCKEMU, hasQsd, LineClient } from './lib/qmp-daemon.js';
import { qemuImg } from './lib/qemu.js';
import { median, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'QMP round trips of query-named-block-nodes, blockemu daemon vs qemu-storage-daemon';
export const flags = { calls: 'round trips per run (default 10000)' };

function daemonArgs(dir: string, sock: string): string[] {
  const raw = JSON.stringify({ driver: 'raw', 'node-name': 'disk0', file: { driver: 'file', filename: join(dir, 'd0.raw') } });
  const q = JSON.stringify({ driver: 'qcow2', 'node-name': 'disk1', file: { driver: 'file', filename: join(dir, 'd1.qcow2') } });
  return ['--blockdev', raw, '--blockdev', q, '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m'];
}

async function measure(cmd: string, args: string[], sock: string, calls: number): Promise<number[]> {
  const proc: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    const c = await LineClient.open(sock);
    const request = '{"execute":"query-named-block-nodes","arguments":{"flat":true}}';
    // Warm-up, so JIT and caches are in the same state for both.
    for (let i = 0; i < Math.min(500, calls); i++) await c.call(request);
    const times: number[] = [];
    for (let i = 0; i < calls; i++) {
      const t0 = process.hrtime.bigint();
      const reply = await c.call(request);
      times.push(Number(process.hrtime.bigint() - t0) / 1000);
      if (i === 0 && !reply.startsWith('{"return": [')) throw new Error(`${cmd}: unexpected reply ${reply.slice(0, 200)}`);
    }
    c.close();
    return times.sort((a, b) => a - b);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

export async function run(ctx: BenchContext): Promise<void> {
  if (!hasQsd()) {
    console.log('qmp: qemu-storage-daemon is not installed (apt-get install qemu-system-common); nothing to compare against');
    return;
  }
  const calls = intFlag(ctx, 'calls', 10_000);
  await withTempDir(async (dir) => {
    await qemuImg(['create', '-q', '-f', 'raw', join(dir, 'd0.raw'), '64M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'd1.qcow2'), '64M']);
    const ours = { med: [] as number[], p99: [] as number[] };
    const qemu = { med: [] as number[], p99: [] as number[] };
    for (let r = 0; r < ctx.runs; r++) {
      const order = r % 2 === 0 ? ['blockemu', 'qemu'] : ['qemu', 'blockemu'];
      for (const who of order) {
        const sock = join(dir, `${who}-${r}.sock`);
        const t =
          who === 'blockemu'
            ? await measure(process.execPath, [BLOCKEMU, 'daemon', ...daemonArgs(dir, sock)], sock, calls)
            : await measure('qemu-storage-daemon', daemonArgs(dir, sock), sock, calls);
        const dst = who === 'blockemu' ? ours : qemu;
        dst.med.push(pct(t, 50));
        dst.p99.push(pct(t, 99));
      }
    }
    const m = { b: median(ours.med), q: median(qemu.med) };
    const p = { b: median(ours.p99), q: median(qemu.p99) };
    console.log(`\nQMP round trips: ${calls} × query-named-block-nodes (flat, 2 nodes + 2 file nodes), ${ctx.runs} runs, medians over runs\n`);
    console.log(
      renderTable(
        [
          ['', 'blockemu (µs)', 'qemu-storage-daemon (µs)', 'ratio blockemu/qemu'],
          ['median', m.b.toFixed(1), m.q.toFixed(1), (m.b / m.q).toFixed(2)],
          ['p99', p.b.toFixed(1), p.q.toFixed(1), (p.b / p.q).toFixed(2)],
          // Issue 16's second target: each daemon's p99 against its own median.
          ['p99 / median', (p.b / m.b).toFixed(2), (p.q / m.q).toFixed(2), ''],
        ],
        new Set([1, 2, 3]),
      ),
    );
    console.log(`\ntarget: ratio <= 1.00 (blockemu at or below qemu-storage-daemon's latency): ${m.b / m.q <= 1 ? 'met' : 'NOT met'}`);
    console.log(`target: blockemu's p99 <= 1.5 x its median: ${p.b / m.b <= 1.5 ? 'met' : 'NOT met'} (qemu-storage-daemon's: ${(p.q / m.q).toFixed(2)} x)`);
  });
}
