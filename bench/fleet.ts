/**
 * `npm run bench -- fleet`: what a test suite that starts a daemon per
 * test pays when its tests run in parallel. Three fleets of `--daemons`
 * (default 32), each daemon with one qcow2 source of `--size` MiB (every
 * other 64 KiB cluster random data; a copy per daemon):
 *
 * - blockemu spawned: one `blockemu daemon` process per daemon;
 * - blockemu in-process: one Node process hosting every daemon through
 *   `startDaemon()` (bench/lib/fleet-host.ts), as a test runner's worker
 *   would;
 * - qsd: one qemu-storage-daemon per daemon, the same command lines.
 *
 * Each fleet is started at once, then every daemon runs a full
 * drive-backup to a new qcow2 target, all in parallel (the same QMP
 * session for all three, driven from this process), then every daemon
 * gets `quit`. Timed: start (first spawn to the last `qmp_capabilities`
 * answered), backups (first `drive-backup` sent to the last
 * `BLOCK_JOB_COMPLETED`), quit (to the last process gone) and the total.
 * Memory, summed over every process of the fleet with its children
 * (blockemu's perl lock helper): RSS when idle (after start), peak RSS
 * (VmHWM, after the backups) and PSS when idle (shared pages divided
 * among their sharers: what the fleet takes from the machine). Fleets
 * take turns run by run; medians over `--runs`; ratios are to qsd in the
 * same runs.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { copyFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchContext, intFlag } from './lib/context.js';
import { daemons as daemonsOf, makeImages, Qmp, syncDisks } from './lib/daemon-session.js';
import type { FleetHostJob } from './lib/fleet-host.js';
import { prefault } from './lib/host-memory.js';
import { treeMemory } from './lib/proc-memory.js';
import { hasQsd } from './lib/qmp-daemon.js';
import { median, MiB, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'N daemons at once, each backing up a small qcow2: blockemu spawned, blockemu in one process (startDaemon), qemu-storage-daemon';
export const flags = {
  daemons: 'daemons per fleet (default 32)',
  size: 'source image size in MiB (default 32)',
  fleets: 'comma-separated fleets to run: spawned, in-process, qsd (default all; qsd is needed for the ratios)',
  'host-node-flags': 'space-separated node flags for the in-process fleet\'s process (e.g. --no-turbo-inlining, which the executables set)',
};

const FLEET_HOST = fileURLToPath(new URL('./lib/fleet-host.js', import.meta.url));

export type FleetKind = 'blockemu spawned' | 'blockemu in-process' | 'qsd';
const KINDS: FleetKind[] = ['blockemu spawned', 'blockemu in-process', 'qsd'];

interface FleetRun {
  startS: number;
  backupS: number;
  quitS: number;
  totalS: number;
  idleRssMiB: number;
  peakRssMiB: number;
  idlePssMiB: number;
  processes: number;
}

/** A started fleet: its QMP clients (negotiated), the processes to measure, and how it ends. */
interface Fleet {
  clients: Qmp[];
  pids: number[];
  /** After every daemon has answered quit and closed its socket: waits for the processes to exit. */
  exited(): Promise<void>;
}

const exitOf = (p: ChildProcess) => (p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => p.once('exit', () => r())));

function blockdev(source: string): Record<string, unknown> {
  return { driver: 'qcow2', 'node-name': 'disk0', file: { driver: 'file', filename: source } };
}

/** Starts the fleet; resolves once every daemon has answered qmp_capabilities. */
/** The in-process host's node flags, and what comes before `--blockdev` for a spawned blockemu (its `--cpu-prof` when asked). */
interface FleetOptions {
  hostFlags: string[];
  blockemuPre: string[];
}

async function startFleet(kind: FleetKind, sockets: string[], sources: string[], opts: FleetOptions): Promise<Fleet> {
  const pollMs = 2;
  if (kind === 'blockemu in-process') {
    const job: FleetHostJob = { kind: 'fleet', daemons: sockets.map((socketPath, i) => ({ socketPath, blockdevs: [blockdev(sources[i]!) as never] })) };
    const host = fork(FLEET_HOST, [JSON.stringify(job)], { execArgv: opts.hostFlags, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      host.once('message', () => resolve());
      host.once('exit', (code) => reject(new Error(`fleet host exited (${code}) before its daemons were up`)));
    });
    const clients = await Promise.all(sockets.map((s) => Qmp.open(s, pollMs)));
    return {
      clients,
      pids: [host.pid!],
      exited: async () => {
        host.disconnect();
        await exitOf(host);
      },
    };
  }
  const procs = sockets.map((sock, i) => {
    const args = ['--blockdev', JSON.stringify(blockdev(sources[i]!)), '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m'];
    return kind === 'qsd'
      ? spawn('qemu-storage-daemon', args, { stdio: 'ignore' })
      : spawn(process.execPath, [...opts.blockemuPre, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  });
  const clients = await Promise.all(sockets.map((s) => Qmp.open(s, pollMs)));
  return { clients, pids: procs.map((p) => p.pid!), exited: async () => void (await Promise.all(procs.map(exitOf))) };
}

async function fleetOnce(kind: FleetKind, dir: string, sources: string[], run: number, opts: FleetOptions): Promise<FleetRun> {
  const tag = kind.replace(/\W+/g, '-');
  const sockets = sources.map((_, i) => join(dir, `${tag}-${run}-${i}.sock`));
  const targets = sources.map((_, i) => join(dir, `target-${i}.qcow2`));
  await Promise.all(targets.map((t) => unlink(t).catch(() => undefined)));
  syncDisks();
  // Every daemon's heap and the targets' page cache (lib/host-memory.ts).
  prefault(sources.length * 160 * MiB);
  const t0 = performance.now();
  const fleet = await startFleet(kind, sockets, sources, opts);
  const t1 = performance.now();
  await new Promise((r) => setTimeout(r, 200)); // let start-up garbage settle before "idle" (untimed: t1 is taken)
  const idle = await treeMemory(fleet.pids);
  const t2 = performance.now();
  await Promise.all(
    fleet.clients.map(async (q, i) => {
      await q.call('drive-backup', { 'job-id': 'b', device: 'disk0', target: targets[i], format: 'qcow2', sync: 'full' });
      const done = await q.event('BLOCK_JOB_COMPLETED');
      if (done.error) throw new Error(`${kind} #${i}: backup failed: ${String(done.error)}`);
    }),
  );
  const t3 = performance.now();
  const peak = await treeMemory(fleet.pids);
  const t4 = performance.now();
  await Promise.all(
    fleet.clients.map(async (q) => {
      await q.call('quit');
      await q.closed();
    }),
  );
  await fleet.exited();
  const t5 = performance.now();
  const s = (ms: number) => ms / 1000;
  return {
    startS: s(t1 - t0),
    backupS: s(t3 - t2),
    quitS: s(t5 - t4),
    totalS: s(t1 - t0 + (t3 - t2) + (t5 - t4)),
    idleRssMiB: idle.rssKiB / 1024,
    peakRssMiB: peak.hwmKiB / 1024,
    idlePssMiB: idle.pssKiB / 1024,
    processes: idle.processes,
  };
}

export async function run(ctx: BenchContext): Promise<void> {
  if (!hasQsd()) {
    console.log('fleet: qemu-storage-daemon is not installed; nothing to compare against');
    return;
  }
  const count = intFlag(ctx, 'daemons', 32);
  const size = intFlag(ctx, 'size', 32) * MiB;
  const opts: FleetOptions = {
    hostFlags: (ctx.flags.get('host-node-flags') ?? '').split(' ').filter((f) => f !== ''),
    blockemuPre: daemonsOf(ctx).find((d) => d.name === 'blockemu')!.pre,
  };
  const wanted = (ctx.flags.get('fleets') ?? 'spawned,in-process,qsd').split(',');
  const unknown = wanted.filter((w) => !KINDS.some((k) => k.endsWith(w)));
  if (unknown.length > 0) throw new Error(`--fleets: unknown fleet ${unknown.join(', ')} (spawned, in-process, qsd)`);
  const kinds = KINDS.filter((k) => wanted.some((w) => k.endsWith(w)));
  await withTempDir(async (dir) => {
    const { qcow2 } = await makeImages(dir, size);
    const sources = Array.from({ length: count }, (_, i) => join(dir, `src-${i}.qcow2`));
    for (const s of sources) await copyFile(qcow2, s);
    const res = new Map<FleetKind, FleetRun[]>(kinds.map((k) => [k, []]));
    for (let r = 0; r < ctx.runs; r++) {
      // Each fleet goes first, second and third in turn.
      const order = kinds.map((_, i) => kinds[(i + r) % kinds.length]!);
      for (const kind of order) res.get(kind)!.push(await fleetOnce(kind, dir, sources, r, opts));
    }
    const m = (kind: FleetKind, k: keyof FleetRun) => (res.has(kind) ? median(res.get(kind)!.map((x) => x[k])) : NaN);
    const timeRows: string[][] = [['fleet', 'start', 'backups', 'quit', 'total', 'total/qsd', 'backups/qsd']];
    const memRows: string[][] = [['fleet', 'processes', 'idle RSS', 'peak RSS', 'idle PSS', 'idle RSS/qsd', 'peak RSS/qsd', 'idle PSS/qsd']];
    for (const kind of kinds) {
      const sec = (k: keyof FleetRun) => `${m(kind, k).toFixed(2)} s`;
      const mib = (k: keyof FleetRun) => `${m(kind, k).toFixed(0)} MiB`;
      const ratio = (k: keyof FleetRun) => (m(kind, k) / m('qsd', k)).toFixed(2);
      timeRows.push([kind, sec('startS'), sec('backupS'), sec('quitS'), sec('totalS'), ratio('totalS'), ratio('backupS')]);
      memRows.push([kind, String(m(kind, 'processes')), mib('idleRssMiB'), mib('peakRssMiB'), mib('idlePssMiB'), ratio('idleRssMiB'), ratio('peakRssMiB'), ratio('idlePssMiB')]);
    }
    console.log(`\n${count} daemons at once, each a full drive-backup of a ${size / MiB} MiB qcow2 (half allocated) to a new qcow2; ${ctx.runs} runs, medians\n`);
    console.log(renderTable(timeRows, new Set([1, 2, 3, 4, 5, 6])));
    console.log();
    console.log(renderTable(memRows, new Set([1, 2, 3, 4, 5, 6, 7])));
    console.log('\nmemory summed over each fleet\'s processes and their children (blockemu: the perl lock helper each process keeps)');
  });
}
