/**
 * `npm run bench -- startup`: what a test suite that starts a daemon per
 * test pays. For blockemu's daemon and qemu-storage-daemon with the same
 * command line (no nodes, 2 nodes, 100 `--blockdev`s of null-co): spawn
 * to an answered `qmp_capabilities`, `quit` to process exit, and the
 * resident memory of the idle daemon (VmRSS after qmp_capabilities).
 * Daemons alternate run by run; medians over `--starts` (default 11:
 * single starts are short and noisy).
 *
 * Then the embedding API: in one fresh Node process (bench/lib/fleet-host.ts),
 * `--starts` sequential `startDaemon()` calls (no node, and 2 null-co
 * blockdevs), each timed to its promise resolving (the socket listens)
 * and to a raw client's `qmp_capabilities` answered (served), closed
 * before the next: the first pays loading the modules, the later ones are
 * what each further test in a test runner's worker pays (target ≤ 10 ms).
 */
import { type ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StartTimes, StartTimesJob } from './lib/fleet-host.js';
import { type BenchContext, intFlag } from './lib/context.js';
import { type Daemon, daemons } from './lib/daemon-session.js';
import { median, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'daemon start-up (spawn to answered qmp_capabilities), quit to exit, idle RSS: blockemu vs qemu-storage-daemon';
export const flags = { starts: 'starts per daemon and node count (default 11)' };

interface StartRun {
  startMs: number;
  quitMs: number;
  rssMiB: number;
}

async function rssMiB(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Connects as soon as the socket accepts (polling every millisecond, as a test harness would). */
async function connectSoon(path: string): Promise<Socket> {
  for (;;) {
    const s = await new Promise<Socket | undefined>((resolve) => {
      const sock = connect(path);
      sock.once('connect', () => resolve(sock));
      sock.once('error', () => resolve(undefined));
    });
    if (s) return s;
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Lines from the socket, one at a time. */
function lineReader(sock: Socket): () => Promise<string> {
  let buf = '';
  const waiting: Array<(l: string) => void> = [];
  const lines: string[] = [];
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const w = waiting.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  return () => (lines.length ? Promise.resolve(lines.shift()!) : new Promise((r) => waiting.push(r)));
}

async function startOnce(d: Daemon, dir: string, nodes: number, run: number): Promise<StartRun> {
  const sock = join(dir, `${d.name}-${nodes}-${run}.sock`);
  const blockdevs = Array.from({ length: nodes }, (_, i) => ['--blockdev', `null-co,node-name=n${i},size=1048576`]).flat();
  const t0 = performance.now();
  const proc: ChildProcess = spawn(d.cmd, [...d.pre, ...blockdevs, '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const s = await connectSoon(sock);
  const next = lineReader(s);
  await next();
  s.write('{"execute":"qmp_capabilities"}\n');
  await next();
  const startMs = performance.now() - t0;
  const rss = await rssMiB(proc.pid!);
  const t1 = performance.now();
  s.write('{"execute":"quit"}\n');
  await exited;
  const quitMs = performance.now() - t1;
  s.destroy();
  return { startMs, quitMs, rssMiB: rss };
}

/** Spawn to exit of an empty Node program. */
async function nodeItself(): Promise<number> {
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }).once('exit', () => resolve()).once('error', reject));
  return performance.now() - t0;
}

/**
 * The least any Node program can do for the same session: a socket server that greets, answers
 * qmp_capabilities and, on quit, answers, closes and lets Node exit. Its quit time is the floor
 * under blockemu's (Node's own teardown of threads and heap).
 */
const NODE_FLOOR = `
const path = process.argv.find((a) => a.startsWith('socket,')).match(/path=([^,]+)/)[1];
const srv = require('node:net').createServer((c) => {
  c.write('{"QMP": {}}\\n');
  c.on('data', (d) => {
    if (String(d).includes('quit')) { c.end('{"return": {}}\\n'); srv.close(); c.destroy(); }
    else c.write('{"return": {}}\\n');
  });
});
srv.listen(path);`;

const FLEET_HOST = fileURLToPath(new URL('./lib/fleet-host.js', import.meta.url));

/** `starts` startDaemon() calls one after another in a fresh process. */
function embeddedStarts(dir: string, starts: number, blockdevs: StartTimesJob['blockdevs']): Promise<StartTimes> {
  const job: StartTimesJob = { kind: 'start-times', dir, starts, blockdevs };
  return new Promise((resolve, reject) => {
    const host = fork(FLEET_HOST, [JSON.stringify(job)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    let result: StartTimes | undefined;
    host.once('message', (m) => (result = m as StartTimes));
    host.once('exit', (code) => (result ? resolve(result) : reject(new Error(`startDaemon timing process exited (${code}) without a result`))));
  });
}

async function embeddedTable(dir: string, starts: number): Promise<void> {
  const rows: string[][] = [['blockdevs', 'import', 'first: resolved', 'served', 'later (median): resolved', 'served', 'later p90 served', 'target ≤ 10 ms']];
  const nullCo = (i: number) => ({ driver: 'null-co', 'node-name': `n${i}`, size: 1048576 }) as never;
  for (const nodes of [0, 2]) {
    const t = await embeddedStarts(dir, Math.max(starts, 3), Array.from({ length: nodes }, (_, i) => nullCo(i)));
    const later = t.servedMs.slice(1).sort((a, b) => a - b);
    const served = median(later);
    rows.push([
      String(nodes),
      `${t.importMs.toFixed(0)} ms`,
      `${t.resolvedMs[0]!.toFixed(1)} ms`,
      `${t.servedMs[0]!.toFixed(1)} ms`,
      `${median(t.resolvedMs.slice(1)).toFixed(2)} ms`,
      `${served.toFixed(2)} ms`,
      `${later[Math.floor(later.length * 0.9)]!.toFixed(2)} ms`,
      served <= 10 ? 'met' : 'NOT met',
    ]);
  }
  console.log(`
startDaemon() in one process, ${Math.max(starts, 3)} in a row: to the promise resolved and to qmp_capabilities answered (served); the first includes compiling
`);
  console.log(renderTable(rows, new Set([1, 2, 3, 4, 5, 6])));
}

/** qsd's median start with no node, from the table's first row. */
const m0 = (rows: string[][]) => parseFloat(rows[1]![2]!);

export async function run(ctx: BenchContext): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v qemu-storage-daemon'], { stdio: 'ignore' }).status !== 0) {
    console.log('startup: qemu-storage-daemon is not installed; nothing to compare against');
    return;
  }
  const runs = intFlag(ctx, 'starts', 11);
  const both = daemons(ctx);
  await withTempDir(async (dir) => {
    const rows: string[][] = [['nodes', 'start blockemu', 'qsd', 'ratio', 'quit blockemu', 'qsd', 'ratio', 'idle RSS blockemu', 'qsd']];
    for (const nodes of [0, 2, 100]) {
      const res: Record<string, StartRun[]> = { blockemu: [], qsd: [] };
      for (let r = 0; r < runs; r++) {
        for (const d of r % 2 === 0 ? both : [...both].reverse()) res[d.name]!.push(await startOnce(d, dir, nodes, r));
      }
      const m = (name: string, k: keyof StartRun) => median(res[name]!.map((x) => x[k]));
      const ratio = (k: keyof StartRun) => (m('blockemu', k) / m('qsd', k)).toFixed(2);
      const ms = (name: string, k: keyof StartRun) => `${m(name, k).toFixed(0)} ms`;
      rows.push([
        String(nodes),
        ms('blockemu', 'startMs'),
        ms('qsd', 'startMs'),
        ratio('startMs'),
        ms('blockemu', 'quitMs'),
        ms('qsd', 'quitMs'),
        ratio('quitMs'),
        `${m('blockemu', 'rssMiB').toFixed(0)} MiB`,
        `${m('qsd', 'rssMiB').toFixed(0)} MiB`,
      ]);
    }
    const floor: number[] = [];
    for (let r = 0; r < runs; r++) floor.push(await nodeItself());
    const nodeServer: Daemon = { name: 'blockemu', cmd: process.execPath, pre: ['-e', NODE_FLOOR, '--'] };
    const quitFloor: number[] = [];
    for (let r = 0; r < runs; r++) quitFloor.push((await startOnce(nodeServer, dir, 0, 1000 + r)).quitMs);
    console.log(`\ndaemon start-up: spawn to answered qmp_capabilities, quit to exit, idle RSS; ${runs} runs, medians\n`);
    console.log(renderTable(rows, new Set([1, 2, 3, 4, 5, 6, 7, 8])));
    // The floor under any Node program on this machine: blockemu's own share is its start minus this.
    const f = median(floor);
    console.log(`\nNode itself (spawn to exit of \`node -e 0\`, same environment): ${f.toFixed(0)} ms = ${(f / m0(rows)).toFixed(2)}× qsd's start with no node`);
    // Likewise for quit: a bare Node socket server answering quit and exiting.
    const qf = median(quitFloor);
    console.log(`Node's quit floor (a bare Node socket server answering quit, then exiting): ${qf.toFixed(1)} ms = ${(qf / parseFloat(rows[1]![5]!)).toFixed(2)}× qsd's quit`);
    await embeddedTable(dir, runs);
  });
}
