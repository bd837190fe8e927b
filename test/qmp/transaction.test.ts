/**
 * `transaction` against qemu-storage-daemon 7.2: the same sessions on the
 * same images through both daemons (started with the same command line);
 * replies and each job's events must be identical. Where blockemu is
 * better on purpose — a rolled-back transaction removes the target files
 * it created, which QEMU leaves behind — the directory listings say so.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { QmpClient, type QmpEvent } from '../../src/qmp/client.js';
import { QmpError } from '../../src/qmp/error.js';
import { BLOCKEMU, qemu, qemuImg, qemuIo } from '../helpers/qemu.js';
import { compareSessions, describeImage, file, nbdWrite, sameImages } from '../helpers/qmp-session.js';

type Step = [command: string, args?: Record<string, unknown>];
type Outcome = { return: unknown } | { error: { class: string; desc: string } };

interface Run {
  outcomes: Outcome[];
  /** Each job's events (by id or device), in order; other events under ''. */
  events: Record<string, Array<{ event: string; data: unknown }>>;
  before: string[];
  after: string[];
  /** The nodes with user-given names at the end (generated names differ by design). */
  namedNodes: string[];
  /** Their dirty bitmaps at the end, as query-named-block-nodes shows them. */
  bitmaps: Record<string, unknown>;
  /** What each of them is: driver, read-only, backing chain depth and file. */
  shapes: Record<string, unknown>;
  dir: string;
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Four images: sources a (raw, all data) and b (qcow2, partly allocated), raw targets t1, t2 of the same size. */
async function images(dir: string): Promise<void> {
  await qemuImg('create', '-q', '-f', 'raw', join(dir, 'a.raw'), '4M');
  // All data: a job copying it issues only writes (zero areas become write-zeroes, which QEMU's parallel tasks may still get through).
  await qemuIo('-f', 'raw', '-c', 'write -P 0x0a 0 4M', join(dir, 'a.raw'));
  await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'b.qcow2'), '4M');
  await qemuIo('-f', 'qcow2', '-c', 'write -P 0x0b 1M 1M', join(dir, 'b.qcow2'));
  for (const t of ['t1.raw', 't2.raw', 't3.raw']) await qemuImg('create', '-q', '-f', 'raw', join(dir, t), '4M');
  await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'ov.qcow2'), '4M');
}

function daemonArgs(dir: string, sock: string): string[] {
  return [
    '--blockdev', `driver=file,node-name=a-file,filename=${dir}/a.raw`,
    '--blockdev', 'driver=raw,node-name=a,file=a-file',
    '--blockdev', `driver=file,node-name=b-file,filename=${dir}/b.qcow2`,
    '--blockdev', 'driver=qcow2,node-name=b,file=b-file',
    '--blockdev', `driver=file,node-name=t1-file,filename=${dir}/t1.raw`,
    '--blockdev', 'driver=raw,node-name=t1,file=t1-file',
    // t2 fails every write: a job into it dies at its first copy.
    '--blockdev', JSON.stringify({ driver: 'raw', 'node-name': 't2', file: { driver: 'blkdebug', image: { driver: 'file', filename: `${dir}/t2.raw` }, 'inject-error': [{ event: 'write_aio', errno: 5 }] } }),
    '--blockdev', `driver=file,node-name=t3-file,filename=${dir}/t3.raw`,
    '--blockdev', 'driver=raw,node-name=t3,file=t3-file',
    // c reads a.raw and fails reads from 2 MiB on: a job copying it fails in the middle.
    '--blockdev', JSON.stringify({ driver: 'raw', 'node-name': 'c', 'read-only': true, file: { driver: 'blkdebug', image: { driver: 'file', filename: `${dir}/a.raw` }, 'inject-error': [{ event: 'read_aio', errno: 5, sector: 4096 }] } }),
    '--chardev', `socket,id=m,path=${sock},server=on,wait=off`,
    '--monitor', 'chardev=m',
  ];
}

async function connect(sock: string, proc: ChildProcess): Promise<QmpClient> {
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`daemon exited with ${proc.exitCode}`);
    try {
      return await QmpClient.connect(sock);
    } catch {
      await sleep(25);
    }
  }
  throw new Error('no QMP socket');
}

/**
 * Plays steps against one daemon. `waitFor` names events that must arrive
 * after the steps (job ends are asynchronous) before the events are read.
 */
async function play(which: 'qsd' | 'blockemu', steps: Step[], waitFor: Array<[string, (e: QmpEvent) => boolean]> = []): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), `blockemu-txn-${which}-`));
  dirs.push(dir);
  await images(dir);
  const sock = join(dir, 'q.sock');
  const args = daemonArgs(dir, sock);
  const proc = which === 'qsd' ? spawn('qemu-storage-daemon', args, { stdio: 'ignore' }) : spawn(process.execPath, [BLOCKEMU, 'daemon', ...args], { stdio: 'ignore' });
  const client = await connect(sock, proc);
  try {
    const before = (await readdir(dir)).sort();
    const outcomes: Outcome[] = [];
    for (const [cmd, a] of steps) {
      const text = JSON.stringify(a ?? {}).replaceAll('${TMP}', dir);
      try {
        const ret = await client.execute(cmd, a ? (JSON.parse(text) as Record<string, unknown>) : undefined);
        outcomes.push({ return: cmd === 'query-named-block-nodes' ? nodeView(ret, dir) : ret });
      } catch (err) {
        if (!(err instanceof QmpError)) throw err;
        outcomes.push({ error: { class: err.qmpClass, desc: err.desc.replaceAll(dir, '${TMP}') } });
      }
    }
    const waited: QmpEvent[] = [];
    for (const [name, pred] of waitFor) waited.push(await client.waitForEvent(name, pred, 20_000));
    await sleep(50);
    const events: Run['events'] = {};
    for (const e of [...client.takeEvents(), ...waited].sort((x, y) => ts(x) - ts(y))) {
      const d = (e.data ?? {}) as Record<string, unknown>;
      const key = String(d['id'] ?? d['device'] ?? '');
      (events[key] ??= []).push({ event: e.event, data: e.data });
    }
    const after = (await readdir(dir)).sort();
    type Info = { 'node-name': string; 'dirty-bitmaps'?: unknown; drv: string; ro: boolean; backing_file_depth: number; backing_file?: string };
    const nodes = await client.execute<Info[]>('query-named-block-nodes', { flat: true });
    const named = nodes.filter((n) => !n['node-name'].startsWith('#'));
    const namedNodes = named.map((n) => n['node-name']).sort();
    const bitmaps = Object.fromEntries(named.filter((n) => n['dirty-bitmaps'] !== undefined).map((n) => [n['node-name'], n['dirty-bitmaps']]));
    const shapes = Object.fromEntries(
      named.map((n) => [n['node-name'], { drv: n.drv, ro: n.ro, depth: n.backing_file_depth, backing: n.backing_file?.replaceAll(dir, '${TMP}') }]),
    );
    return { outcomes, events, before, after, namedNodes, bitmaps, shapes, dir };
  } finally {
    await client.execute('quit').catch(() => undefined);
    await client.close();
    if (proc.exitCode === null) await new Promise((r) => proc.once('exit', r));
  }
}

/**
 * What a node list says about the graph, leaving out the blkdebug trees (t2, c)
 * and their children (QEMU names them by json: filenames) and generated names.
 */
function nodeView(ret: unknown, dir: string): unknown {
  type Node = { 'node-name': string; drv: string; ro: boolean; file: string; image: { format: string; filename: string }; 'dirty-bitmaps'?: Array<{ name?: string; count: number; recording: boolean; granularity: number }> };
  return (ret as Node[])
    .filter((n) => !n.file.includes("t2.raw") && !n.file.startsWith("json:") && n["node-name"] !== "c" && n.drv !== "blkdebug")
    .map((n) => ({
      name: n['node-name'].startsWith('#') ? '#' : n['node-name'],
      drv: n.drv,
      ro: n.ro,
      file: n.file.replaceAll(dir, '${TMP}'),
      format: n.image.format,
      bitmaps: n['dirty-bitmaps'],
    }));
}

const ts = (e: QmpEvent) => {
  const t = (e as unknown as { timestamp?: { seconds: number; microseconds: number } }).timestamp;
  return t ? t.seconds * 1e6 + t.microseconds : 0;
};

async function both(steps: Step[], waitFor: Array<[string, (e: QmpEvent) => boolean]> = []): Promise<{ qsd: Run; ours: Run }> {
  const qsd = await play('qsd', steps, waitFor);
  const ours = await play('blockemu', steps, waitFor);
  expect(ours.outcomes).toEqual(qsd.outcomes);
  expect(ours.events).toEqual(qsd.events);
  expect(ours.bitmaps).toEqual(qsd.bitmaps);
  expect(ours.shapes).toEqual(qsd.shapes);
  return { qsd, ours };
}

const backup = (job: string, device: string, target: string, extra: Record<string, unknown> = {}) => ({
  type: 'blockdev-backup',
  data: { 'job-id': job, device, target, sync: 'full', ...extra },
});
const queries: Step[] = [['query-jobs'], ['query-block-jobs']];

describe.skipIf(!qemu.storageDaemon)('transaction vs qemu-storage-daemon', () => {
  it('validation: empty list, missing data, unknown kind, bad completion mode', async () => {
    await both([
      ['transaction', { actions: [] }],
      ['transaction', { actions: [{ type: 'abort' }] }],
      ['transaction', { actions: [{ type: 'nosuch', data: {} }] }],
      ['transaction', { actions: [{ type: 'blockdev-backup', data: { device: 'a' } }] }],
      ['transaction', { actions: [], properties: { 'completion-mode': 'sometimes' } }],
      ['transaction', { actions: [{ type: 'abort', data: { x: 1 } }] }],
    ]);
  });

  it('rollback: a drive-backup before an abort action is undone; the target file it created is removed (QEMU leaves it)', async () => {
    const { qsd, ours } = await both([
      ['transaction', { actions: [{ type: 'drive-backup', data: { 'job-id': 'ja', device: 'a', target: '${TMP}/new.qcow2', format: 'qcow2', sync: 'full' } }, { type: 'abort', data: {} }] }],
      ...queries,
    ]);
    expect(ours.after).toEqual(ours.before);
    expect(qsd.after).toEqual([...qsd.before, 'new.qcow2'].sort());
  });

  it('rollback: a duplicate job id, a missing device, a missing target directory', async () => {
    const { qsd, ours } = await both([
      ['transaction', { actions: [backup('x', 'a', 't1'), backup('x', 'b', 't1')] }],
      ['transaction', { actions: [backup('j1', 'a', 't1'), backup('j2', 'nosuch', 't1')] }],
      ['transaction', { actions: [backup('j1', 'a', 't1'), { type: 'drive-backup', data: { 'job-id': 'j2', device: 'b', target: '${TMP}/no/dir.qcow2', sync: 'full' } }] }],
      ['transaction', { actions: [{ type: 'drive-backup', data: { 'job-id': 'j2', device: 'b', target: '${TMP}/b2.qcow2', sync: 'full' } }, backup('j1', 'a', 'a')] }],
      ...queries,
    ]);
    expect(ours.after).toEqual(ours.before);
    expect(ours.namedNodes).toEqual(qsd.namedNodes);
  });

  it('actions that cannot complete as a group are refused in grouped mode; bitmap lookups fail as in QEMU', async () => {
    await both([
      ['transaction', { actions: [backup('j1', 'a', 't1'), { type: 'block-dirty-bitmap-add', data: { node: 'a', name: 'bm' } }], properties: { 'completion-mode': 'grouped' } }],
      ['transaction', { actions: [{ type: 'blockdev-snapshot-sync', data: { device: 'b', 'snapshot-file': '${TMP}/o.qcow2' } }], properties: { 'completion-mode': 'grouped' } }],
      ['transaction', { actions: [{ type: 'block-dirty-bitmap-remove', data: { node: 'a', name: 'nosuch' } }] }],
      ['transaction', { actions: [{ type: 'block-dirty-bitmap-clear', data: { node: 'nosuch', name: 'bm' } }] }],
      ['transaction', { actions: [{ type: 'block-dirty-bitmap-merge', data: { node: 'a', target: 'bm', bitmaps: ['x'] } }] }],
      ...queries,
    ]);
  });

  it('bitmap actions take effect together, and a rollback restores every bitmap as it was', async () => {
    const bm = (type: string, node: string, name: string) => ({ type, data: { node, name } });
    await both([
      ['transaction', { actions: [bm('block-dirty-bitmap-add', 'a', 'keep'), { type: 'block-dirty-bitmap-add', data: { node: 'b', name: 'b1', granularity: 131072, disabled: true } }] }],
      ['transaction', { actions: [bm('block-dirty-bitmap-add', 'a', 'gone'), bm('block-dirty-bitmap-disable', 'a', 'keep'), bm('block-dirty-bitmap-enable', 'b', 'b1'), { type: 'abort', data: {} }] }],
      ['transaction', { actions: [bm('block-dirty-bitmap-remove', 'a', 'keep'), bm('block-dirty-bitmap-clear', 'b', 'b1'), bm('block-dirty-bitmap-add', 'a', 'keep')] }],
      ['transaction', { actions: [bm('block-dirty-bitmap-clear', 'a', 'keep'), { type: 'block-dirty-bitmap-merge', data: { node: 'a', target: 'keep', bitmaps: ['nosuch'] } }] }],
      ['transaction', { actions: [{ type: 'block-dirty-bitmap-add', data: { node: 'a', name: 'g', granularity: 1000 } }] }],
      ['block-dirty-bitmap-remove', { node: 'a', name: 'gone' }],
      ['transaction', { actions: [bm('block-dirty-bitmap-disable', 'a', 'keep'), bm('block-dirty-bitmap-remove', 'b', 'b1')] }],
    ]);
  });

  it('blockdev-snapshot-sync: its checks, and a rolled-back one that leaves no file (QEMU leaves it)', async () => {
    const snap = (extra: Record<string, unknown>) => ({ type: 'blockdev-snapshot-sync', data: { 'snapshot-file': '${TMP}/o2.qcow2', ...extra } });
    const { qsd, ours } = await both([
      ['blockdev-snapshot-sync', { device: 'a', 'snapshot-file': '${TMP}/x.qcow2' }],
      ['blockdev-snapshot-sync', { 'node-name': 'a', 'snapshot-file': '${TMP}/x.qcow2' }],
      ['blockdev-snapshot-sync', { 'node-name': 'a', 'snapshot-file': '${TMP}/x.qcow2', 'snapshot-node-name': 't1' }],
      ['transaction', { actions: [snap({ 'node-name': 'a', 'snapshot-node-name': 'o2' }), { type: 'abort', data: {} }] }],
      ['transaction', { actions: [snap({ 'node-name': 'a', 'snapshot-node-name': 'o2' })], properties: { 'completion-mode': 'grouped' } }],
      ['blockdev-snapshot-sync', { 'node-name': 'nosuch', 'snapshot-file': '${TMP}/x.qcow2', 'snapshot-node-name': 'o3' }],
      ['blockdev-snapshot-sync', { 'node-name': 'a', 'snapshot-file': '${TMP}/no/dir.qcow2', 'snapshot-node-name': 'o3' }],
    ]);
    expect(ours.after).toEqual(ours.before);
    expect(qsd.after).toEqual([...qsd.before, 'o2.qcow2'].sort());
  });

  it('blockdev-snapshot: an existing overlay node goes on top of a node; its checks; a rollback takes it off again', async () => {
    const ov = { driver: 'qcow2', 'node-name': 'ov', file: { driver: 'file', filename: '${TMP}/ov.qcow2' } };
    await both([
      ['blockdev-add', ov],
      ['blockdev-snapshot', { node: 'nosuch', overlay: 'ov' }],
      ['blockdev-snapshot', { node: 'b', overlay: 'nosuch' }],
      ['blockdev-snapshot', { node: 'b', overlay: 't1' }],
      ['transaction', { actions: [{ type: 'blockdev-snapshot', data: { node: 'b', overlay: 'ov' } }], properties: { 'completion-mode': 'grouped' } }],
      ['transaction', { actions: [{ type: 'blockdev-snapshot', data: { node: 'b', overlay: 'ov' } }, { type: 'abort', data: {} }] }],
      ['blockdev-snapshot', { node: 'a', overlay: 'ov' }],
      ['blockdev-snapshot', { node: 'b', overlay: 'ov' }],
    ]);
  });

  it('a snapshot of a node with a parent moves the parent onto the overlay (a rollback moves it back); the old node is then a busy backing node', async () => {
    const top = ['blockdev-add', { driver: 'raw', 'node-name': 'top', file: 'b' }] as Step;
    const snap = (name: string) => ({ type: 'blockdev-snapshot-sync', data: { 'node-name': 'b', 'snapshot-file': `\${TMP}/${name}.qcow2`, 'snapshot-node-name': name } });
    await both([
      top,
      ['transaction', { actions: [snap('o1'), { type: 'abort', data: {} }] }],
      ['blockdev-del', { 'node-name': 'b' }],
      ['transaction', { actions: [snap('o2')] }],
      ['blockdev-del', { 'node-name': 'b' }],
      // (blockdev-del of o2 differs on purpose: the storage daemon does not own overlays, blockemu does; see the README.)
    ]);
    // Guest writes through the parent land in the overlay, not in the old node's image (blockemu only: qsd 7.2 has no human-monitor-command).
    const run = await play('blockemu', [
      top,
      ['transaction', { actions: [snap('o1'), { type: 'abort', data: {} }] }],
      ['human-monitor-command', { 'command-line': 'qemu-io top "write -P 0x33 64k 64k"' }],
      ['transaction', { actions: [snap('o2')] }],
      ['human-monitor-command', { 'command-line': 'qemu-io top "write -P 0x5a 0 64k"' }],
    ]);
    expect(run.outcomes.map((o) => Object.keys(o)[0])).toEqual(['return', 'error', 'return', 'return', 'return']);
    const reads = async (file: string, cmd: string) => (await qemuIo('-f', 'qcow2', '-c', cmd, join(run.dir, file))).stdout;
    // Rolled back: the parent wrote into b again.
    expect(await reads('b.qcow2', 'read -P 0x33 64k 64k')).toContain('read 65536/65536');
    expect(await reads('b.qcow2', 'read -P 0 0 64k')).toContain('read 65536/65536');
    expect(await reads('o2.qcow2', 'read -P 0x5a 0 64k')).toContain('read 65536/65536');
  });

  it('a backup puts a copy-before-write filter above its source, named or not, and takes it away at its end', async () => {
    const job = (id: string, target: string, filter?: string) => ['blockdev-backup', { 'job-id': id, device: 'a', target, sync: 'full', speed: 65536, ...(filter ? { 'filter-node-name': filter } : {}) }] as Step;
    await both(
      [
        job('j', 't1', 'cbw0'),
        job('j2', 'b', 'cbw0'),
        job('j2', 'b', 'bad name'),
        job('j2', 'b', 'cbw1'),
        ['query-named-block-nodes', { flat: true }],
        ['blockdev-backup', { 'job-id': 'j3', device: 'cbw0', target: 'b', sync: 'full' }],
        ['blockdev-backup', { 'job-id': 'j4', device: 't1', target: 'b', sync: 'full' }],
        ['blockdev-del', { 'node-name': 'cbw0' }],
        ['blockdev-del', { 'node-name': 'a' }],
        ['block-job-cancel', { device: 'j' }],
        ['block-job-cancel', { device: 'j2' }],
      ],
      [
        ['JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'j' && (e.data as { status: string }).status === 'null'],
        ['JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'j2' && (e.data as { status: string }).status === 'null'],
      ],
    );
  });

  it('grouped: a source failing in the middle of its job cancels the other job (iotest 124)', async () => {
    await both(
      [['transaction', { actions: [backup('g1', 'b', 't1', { speed: 65536 }), backup('g2', 'c', 't3', { speed: 1 << 20 })], properties: { 'completion-mode': 'grouped' } }]],
      [
        ['JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'g1' && (e.data as { status: string }).status === 'null'],
        ['JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'g2' && (e.data as { status: string }).status === 'null'],
      ],
    );
  });

  it('individual: two backups start together and complete; both targets equal their sources', async () => {
    const { ours } = await both(
      [['transaction', { actions: [backup('j1', 'a', 't1'), { type: 'drive-backup', data: { 'job-id': 'j2', device: 'b', target: '${TMP}/b2.qcow2', sync: 'full', format: 'qcow2' } }] }]],
      [
        ['JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'j1' && (e.data as { status: string }).status === 'null'],
        ['JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'j2' && (e.data as { status: string }).status === 'null'],
      ],
    );
    expect(ours.after).toEqual([...ours.before, 'b2.qcow2'].sort());
    for (const [src, dst] of [['a.raw', 't1.raw'], ['b.qcow2', 'b2.qcow2']] as const) {
      expect((await qemuImg('compare', join(ours.dir, src), join(ours.dir, dst))).code).toBe(0);
    }
    expect((await qemuImg('check', join(ours.dir, 'b2.qcow2'))).code).toBe(0);
  });

  it('grouped: when one job fails, the other is cancelled', async () => {
    await both(
      [['transaction', { actions: [backup('g1', 'b', 't1', { speed: 65536 }), backup('g2', 'a', 't2')], properties: { 'completion-mode': 'grouped' } }]],
      [
        ['JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'g1' && (e.data as { status: string }).status === 'null'],
        ['JOB_STATUS_CHANGE', (e) => (e.data as { id: string; status: string }).id === 'g2' && (e.data as { status: string }).status === 'null'],
      ],
    );
  });
});

describe.skipIf(!qemu.available)('transaction: one instant for every drive', () => {
  it('a guest write right after the transaction returns reaches no target', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blockemu-txn-pit-'));
    dirs.push(dir);
    await images(dir);
    await copyFile(join(dir, 'a.raw'), join(dir, 'a-before.raw'));
    await copyFile(join(dir, 'b.qcow2'), join(dir, 'b-before.qcow2'));
    const sock = join(dir, 'q.sock');
    const proc = spawn(process.execPath, [BLOCKEMU, 'daemon', ...daemonArgs(dir, sock)], { stdio: 'ignore' });
    const client = await connect(sock, proc);
    try {
      // Slow jobs: the writes below land long before the copier reaches them.
      await client.execute('transaction', {
        actions: [
          { type: 'drive-backup', data: { 'job-id': 'ja', device: 'a', target: join(dir, 'a-bak.raw'), format: 'raw', sync: 'full', speed: 1 << 20, 'filter-node-name': 'fa' } },
          { type: 'drive-backup', data: { 'job-id': 'jb', device: 'b', target: join(dir, 'b-bak.qcow2'), format: 'qcow2', sync: 'full', speed: 1 << 20, 'filter-node-name': 'fb' } },
        ],
      });
      // The guest writes above the backup filters, where a device would be: QEMU's permissions refuse writers of the sources themselves.
      for (const node of ['fa', 'fb']) {
        const out = await client.execute<string>('human-monitor-command', { 'command-line': `qemu-io ${node} "write -P 0xee 3M 1M"` });
        expect(out).toMatch(/^wrote 1048576\/1048576/);
      }
      for (const job of ['ja', 'jb']) await client.execute('block-job-set-speed', { device: job, speed: 0 });
      for (const job of ['ja', 'jb']) await client.waitForEvent('BLOCK_JOB_COMPLETED', (e) => (e.data as { device: string }).device === job, 20_000);
      expect((await qemuImg('compare', join(dir, 'a-before.raw'), join(dir, 'a-bak.raw'))).code).toBe(0);
      expect((await qemuImg('compare', join(dir, 'b-before.qcow2'), join(dir, 'b-bak.qcow2'))).code).toBe(0);
      expect((await qemuImg('check', join(dir, 'b-bak.qcow2'))).code).toBe(0);
      // The sources hold the new data.
      expect((await qemuImg('compare', join(dir, 'a-before.raw'), join(dir, 'a.raw'))).code).toBe(1);
    } finally {
      await client.execute('quit').catch(() => undefined);
      await client.close();
      if (proc.exitCode === null) await new Promise((r) => proc.once('exit', r));
    }
  });
});

describe.skipIf(!qemu.available)('blockdev-snapshot-sync overlays live as long as something uses them, as in qemu-storage-daemon', () => {
  it("an exported node's overlay takes the export's writes and goes with the export; an unused one is closed at once", async () => {
    const names = { look: async (c: QmpClient) => (await c.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true })).map((n) => n['node-name']).filter((n) => !n.startsWith('#')).sort() };
    const log = await compareSessions(
      async (dir) => {
        await images(dir);
        await copyFile(join(dir, 'b.qcow2'), join(dir, 'b-before.qcow2'));
        await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'c.qcow2'), '4M');
      },
      [
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'b', file: file('b.qcow2') }],
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'c', file: file('c.qcow2') }],
        ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
        ['block-export-add', { type: 'nbd', id: 'e', 'node-name': 'b', name: 'b', writable: true }],
        [
          'transaction',
          {
            actions: [
              { type: 'blockdev-snapshot-sync', data: { 'node-name': 'b', 'snapshot-file': '${DIR}/o1.qcow2', 'snapshot-node-name': 'o1' } },
              { type: 'blockdev-snapshot-sync', data: { 'node-name': 'c', 'snapshot-file': '${DIR}/o2.qcow2', 'snapshot-node-name': 'o2' } },
            ],
          },
        ],
        names,
        { sh: nbdWrite('b', 'write -P 0x77 1M 64k') },
        // The overlay is not the monitor's: the export holds it.
        ['blockdev-del', { 'node-name': 'o1' }],
        // o2 was closed when the transaction ended: its name is free, its image still there.
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'o2', file: file('o2.qcow2'), backing: null }],
        ['block-export-del', { id: 'e' }],
        names,
      ],
      (l) => l,
      async (dir) => ({ base: await sameImages('b-before.qcow2', 'b.qcow2')(dir), overlay: await describeImage('o1.qcow2')(dir) }),
    );
    expect(JSON.stringify(log)).toContain('Node o1 is in use');
    expect(log).toContainEqual(['b', 'c', 'o1']);
    expect(log).toContainEqual(['b', 'c', 'o2']);
  });
});
