/**
 * `npm run bench -- qmp`: QMP round-trip latency of query-named-block-nodes
 * on blockemu's daemon and on qemu-storage-daemon, started with the same
 * command line (a raw and a qcow2 node) in the same run, driven by the
 * same minimal client: one request in flight, the next sent when the
 * reply's line arrives. Median and p99 per daemon, and the ratio
 * blockemu/qemu (target: at or below 1). Runs alternate which daemon goes
 * first; the reported figure is the median over runs.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { type BenchContext, intFlag } from './lib/context.js';
import { qemuImg } from './lib/qemu.js';
import { median, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'QMP round trips of query-named-block-nodes, blockemu daemon vs qemu-storage-daemon';
export const flags = { calls: 'round trips per run (default 10000)' };

const BLOCKEMU = fileURLToPath(new URL('../bin/blockemu.js', import.meta.url));

function hasQsd(): boolean {
  return spawnSync('sh', ['-c', 'command -v qemu-storage-daemon'], { stdio: 'ignore' }).status === 0;
}

/** One line-oriented QMP connection that times request -> reply. */
class LineClient {
  private buf = '';
  private waiter: ((line: string) => void) | undefined;
  private readonly lines: string[] = [];
  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiter;
        if (w) {
          this.waiter = undefined;
          w(line);
        } else this.lines.push(line);
      }
    });
  }
  static async open(path: string): Promise<LineClient> {
    for (let i = 0; ; i++) {
      try {
        const s = await new Promise<Socket>((res, rej) => {
          const c = connect(path);
          c.once('connect', () => res(c));
          c.once('error', rej);
        });
        const client = new LineClient(s);
        await client.next();
        await client.call('{"execute":"qmp_capabilities"}');
        return client;
      } catch (err) {
        if (i > 400) throw err;
        await sleep(25);
      }
    }
  }
  next(): Promise<string> {
    const l = this.lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => (this.waiter = r));
  }
  async call(request: string): Promise<string> {
    this.sock.write(`${request}\n`);
    return this.next();
  }
  close(): void {
    this.sock.destroy();
  }
}

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
        ],
        new Set([1, 2, 3]),
      ),
    );
    console.log(`\ntarget: ratio <= 1.00 (blockemu at or below qemu-storage-daemon's latency): ${m.b / m.q <= 1 ? 'met' : 'NOT met'}`);
  });
}
