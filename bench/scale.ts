/**
 * `npm run bench -- scale`: one daemon under more than a test usually
 * asks, blockemu's daemon against qemu-storage-daemon on the same command
 * line, daemons taking turns run by run, medians over `--runs`:
 *
 * - backups: `--backups` (default 16) full drive-backups at once in one
 *   daemon, each of its own qcow2 source (`--size` MiB, half allocated)
 *   to a new qcow2, timed from the first request to the last
 *   BLOCK_JOB_COMPLETED, with the daemon's peak RSS;
 * - nodes: `--nodes` (default 1000) nodes on the command line, as null-co
 *   nodes and as qcow2 images over file nodes (half as many images: two
 *   nodes each); the reply time of `query-named-block-nodes` (flat; median
 *   of `--calls`) and memory per node: idle RSS with the nodes minus idle
 *   RSS with none, over the node count (RSS of the daemon with its
 *   children: blockemu's perl lock helper opens each image too);
 * - clients: `--clients` (default 100) QMP clients at once, each
 *   connecting, negotiating and running four queries, on one monitor
 *   socket and on a socket each. qemu-storage-daemon serves one client
 *   per socket at a time (the others' connects are refused while one is
 *   served and retried every 2 ms), so on one socket it serves them in
 *   turn; blockemu serves any number at once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BenchContext, intFlag } from './lib/context.js';
import { type Daemon, daemons as daemonsOf, makeImages, Qmp, syncDisks } from './lib/daemon-session.js';
import { prefault } from './lib/host-memory.js';
import { treeMemory } from './lib/proc-memory.js';
import { qemuImg } from './lib/qemu.js';
import { hasQsd } from './lib/qmp-daemon.js';
import { median, MiB, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'one daemon at scale: N backups at once, query-named-block-nodes and memory per node with 1000 nodes, 100 QMP clients at once; blockemu vs qemu-storage-daemon';
export const flags = {
  backups: 'backups at once in one daemon (default 16; 0 skips)',
  size: 'source size per backup in MiB (default 32)',
  nodes: 'nodes for the node-count checks (default 1000; 0 skips)',
  calls: 'query-named-block-nodes calls per run (default 50)',
  clients: 'QMP clients at once (default 100; 0 skips)',
};

interface Spawned {
  proc: ChildProcess;
  stop(): Promise<void>;
}

function monitorArgs(socks: string[]): string[] {
  return socks.flatMap((s, i) => ['--chardev', `socket,id=m${i},path=${s},server=on,wait=off`, '--monitor', `chardev=m${i}`]);
}

function spawnDaemon(d: Daemon, args: string[], socks: string[]): Spawned {
  const proc = spawn(d.cmd, [...d.pre, ...args, ...monitorArgs(socks)], { stdio: ['ignore', 'ignore', d.name === 'qsd' ? 'ignore' : 'inherit'] });
  return {
    proc,
    async stop() {
      proc.kill('SIGTERM');
      if (proc.exitCode === null && proc.signalCode === null) await new Promise((r) => proc.once('exit', r));
    },
  };
}

/** Runs `fn` for each daemon, `runs` times, taking turns; returns the results per daemon name. */
async function alternate<T>(ds: Daemon[], runs: number, fn: (d: Daemon, run: number) => Promise<T>): Promise<Record<string, T[]>> {
  const out: Record<string, T[]> = { blockemu: [], qsd: [] };
  for (let r = 0; r < runs; r++) for (const d of r % 2 === 0 ? ds : [...ds].reverse()) out[d.name]!.push(await fn(d, r));
  return out;
}

const mid = <T>(xs: T[], k: (x: T) => number) => median(xs.map(k));

async function backupsAtOnce(ctx: BenchContext, ds: Daemon[], dir: string): Promise<void> {
  const n = intFlag(ctx, 'backups', 16, 0);
  if (n === 0) return;
  const size = intFlag(ctx, 'size', 32) * MiB;
  const { qcow2 } = await makeImages(dir, size);
  const sources = Array.from({ length: n }, (_, i) => join(dir, `bsrc-${i}.qcow2`));
  for (const s of sources) await copyFile(qcow2, s);
  const args = sources.flatMap((s, i) => ['--blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': `disk${i}`, file: { driver: 'file', filename: s } })]);
  const res = await alternate(ds, ctx.runs, async (d, r) => {
    const sock = join(dir, `backups-${d.name}-${r}.sock`);
    syncDisks();
    prefault(n * size + 512 * MiB);
    const daemon = spawnDaemon(d, args, [sock]);
    const q = await Qmp.open(sock);
    try {
      const t0 = performance.now();
      // Requests one after the other (the client keeps one in flight); each is answered as soon as its job starts.
      for (let i = 0; i < n; i++) await q.call('drive-backup', { 'job-id': `b${i}`, device: `disk${i}`, target: join(dir, `btgt-${d.name}-${r}-${i}.qcow2`), format: 'qcow2', sync: 'full' });
      for (let done = 0; done < n; done++) {
        const e = await q.event('BLOCK_JOB_COMPLETED');
        if (e.error) throw new Error(`${d.name}: a backup failed: ${String(e.error)}`);
      }
      const seconds = (performance.now() - t0) / 1000;
      return { seconds, peakMiB: (await treeMemory([daemon.proc.pid!])).hwmKiB / 1024 };
    } finally {
      q.close();
      await daemon.stop();
    }
  });
  const b = mid(res.blockemu!, (x) => x.seconds);
  const qs = mid(res.qsd!, (x) => x.seconds);
  console.log(`\n${n} full drive-backups at once in one daemon, ${size / MiB} MiB qcow2 each (half allocated); ${ctx.runs} runs, medians\n`);
  console.log(
    renderTable(
      [
        ['', 'blockemu', 'qsd', 'blockemu/qsd'],
        ['time to the last completed', `${b.toFixed(2)} s`, `${qs.toFixed(2)} s`, (b / qs).toFixed(2)],
        ['peak RSS', `${mid(res.blockemu!, (x) => x.peakMiB).toFixed(0)} MiB`, `${mid(res.qsd!, (x) => x.peakMiB).toFixed(0)} MiB`, (mid(res.blockemu!, (x) => x.peakMiB) / mid(res.qsd!, (x) => x.peakMiB)).toFixed(2)],
      ],
      new Set([1, 2, 3]),
    ),
  );
}

interface NodesRun {
  idleKiB: number;
  replyMs: number;
  replyBytes: number;
}

/** Idle RSS of the daemon (with children) after start, then `calls` timed query-named-block-nodes. */
async function nodesOnce(d: Daemon, args: string[], sock: string, calls: number): Promise<NodesRun> {
  const daemon = spawnDaemon(d, args, [sock]);
  const q = await Qmp.open(sock);
  try {
    await new Promise((r) => setTimeout(r, 500)); // start-up's garbage and threads settle
    const idleKiB = (await treeMemory([daemon.proc.pid!])).rssKiB;
    const times: number[] = [];
    let replyBytes = 0;
    for (let i = 0; i < calls + 5; i++) {
      const t0 = performance.now();
      const nodes = (await q.call('query-named-block-nodes', { flat: true })) as unknown[];
      if (i >= 5) times.push(performance.now() - t0); // the first few warm up both sides
      if (i === 0) replyBytes = JSON.stringify(nodes).length;
    }
    return { idleKiB, replyMs: median(times), replyBytes };
  } finally {
    q.close();
    await daemon.stop();
  }
}

async function manyNodes(ctx: BenchContext, ds: Daemon[], dir: string): Promise<void> {
  const n = intFlag(ctx, 'nodes', 1000, 0);
  if (n === 0) return;
  const calls = intFlag(ctx, 'calls', 50);
  const images = Math.floor(n / 2);
  const template = join(dir, 'node-template.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', template, '64M']);
  for (let i = 0; i < images; i++) await copyFile(template, join(dir, `node-${i}.qcow2`));
  const layouts: Array<{ label: string; nodes: number; args: string[] }> = [
    { label: 'none', nodes: 0, args: [] },
    { label: `${n} null-co`, nodes: n, args: Array.from({ length: n }, (_, i) => ['--blockdev', `null-co,node-name=n${i},size=67108864`]).flat() },
    {
      label: `${images} qcow2 + file`,
      nodes: 2 * images,
      args: Array.from({ length: images }, (_, i) => ['--blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': `q${i}`, file: { driver: 'file', 'node-name': `f${i}`, filename: join(dir, `node-${i}.qcow2`) } })]).flat(),
    },
  ];
  const results = new Map<string, Record<string, NodesRun[]>>();
  for (const l of layouts) results.set(l.label, await alternate(ds, ctx.runs, (d, r) => nodesOnce(d, l.args, join(dir, `nodes-${d.name}-${r}.sock`), calls)));
  const none = results.get('none')!;
  const rows: string[][] = [['nodes', 'reply blockemu', 'qsd', 'blockemu/qsd', 'reply size', 'idle RSS blockemu', 'qsd', 'per node blockemu', 'qsd', 'blockemu/qsd']];
  for (const l of layouts) {
    const r = results.get(l.label)!;
    const reply = (who: string) => mid(r[who]!, (x) => x.replyMs);
    const idle = (who: string) => mid(r[who]!, (x) => x.idleKiB);
    const perNode = (who: string) => (l.nodes === 0 ? NaN : ((idle(who) - mid(none[who]!, (x) => x.idleKiB)) * 1024) / l.nodes);
    rows.push([
      l.label,
      `${reply('blockemu').toFixed(2)} ms`,
      `${reply('qsd').toFixed(2)} ms`,
      (reply('blockemu') / reply('qsd')).toFixed(2),
      `${(mid(r.blockemu!, (x) => x.replyBytes) / 1024).toFixed(0)} KiB`,
      `${(idle('blockemu') / 1024).toFixed(1)} MiB`,
      `${(idle('qsd') / 1024).toFixed(1)} MiB`,
      l.nodes === 0 ? '' : `${perNode('blockemu').toFixed(0)} B`,
      l.nodes === 0 ? '' : `${perNode('qsd').toFixed(0)} B`,
      l.nodes === 0 ? '' : (perNode('blockemu') / perNode('qsd')).toFixed(2),
    ]);
  }
  console.log(`\nquery-named-block-nodes (flat) reply time, median of ${calls}; idle RSS (with children) and per node: (idle RSS with the nodes − with none) / nodes; ${ctx.runs} runs, medians\n`);
  console.log(renderTable(rows, new Set([1, 2, 3, 4, 5, 6, 7, 8, 9])));
}

/** One client: connect (retrying while refused), negotiate, four queries, close. */
async function clientSession(sock: string): Promise<void> {
  const q = await Qmp.open(sock, 2);
  try {
    await q.call('query-version');
    await q.call('query-named-block-nodes', { flat: true });
    await q.call('query-block-jobs');
    await q.call('query-commands');
  } finally {
    q.close();
  }
}

async function manyClients(ctx: BenchContext, ds: Daemon[], dir: string): Promise<void> {
  const n = intFlag(ctx, 'clients', 100, 0);
  if (n === 0) return;
  const nodeArgs = ['--blockdev', 'null-co,node-name=disk0,size=67108864', '--blockdev', 'null-co,node-name=disk1,size=67108864'];
  const rows: string[][] = [['layout', 'blockemu', 'qsd', 'blockemu/qsd']];
  for (const layout of ['one socket', 'a socket each'] as const) {
    const res = await alternate(ds, ctx.runs, async (d, r) => {
      const socks = Array.from({ length: layout === 'one socket' ? 1 : n }, (_, i) => join(dir, `cl-${d.name}-${r}-${i}.sock`));
      const daemon = spawnDaemon(d, nodeArgs, socks);
      try {
        // Every socket is up before the clock starts: this times serving, not start-up.
        for (const s of socks) (await Qmp.open(s, 2)).close();
        const t0 = performance.now();
        await Promise.all(Array.from({ length: n }, (_, i) => clientSession(socks[i % socks.length]!)));
        return (performance.now() - t0) / 1000;
      } finally {
        await daemon.stop();
      }
    });
    const b = median(res.blockemu!);
    const q = median(res.qsd!);
    rows.push([layout, `${(b * 1000).toFixed(0)} ms`, `${(q * 1000).toFixed(0)} ms`, (b / q).toFixed(2)]);
  }
  console.log(`\n${n} QMP clients at once, each: connect, qmp_capabilities, 4 queries, close (time to the last done); ${ctx.runs} runs, medians\n`);
  console.log(renderTable(rows, new Set([1, 2, 3])));
}

export async function run(ctx: BenchContext): Promise<void> {
  if (!hasQsd()) {
    console.log('scale: qemu-storage-daemon is not installed; nothing to compare against');
    return;
  }
  const ds = daemonsOf(ctx);
  await withTempDir(async (dir) => {
    await backupsAtOnce(ctx, ds, dir);
    await manyNodes(ctx, ds, dir);
    await manyClients(ctx, ds, dir);
  });
}
