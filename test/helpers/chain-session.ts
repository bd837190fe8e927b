/**
 * Sessions on a 3-deep qcow2 chain, played on qemu-storage-daemon and on
 * blockemu alike (stream and commit tests): the chain made by QEMU's
 * tools, one daemon per session on a copy of its own, every reply and
 * event recorded (timestamps dropped, the directory and generated node
 * names normalised), then what QEMU's tools say of the images.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import type { QmpClient } from '../../src/qmp/client.js';
import { type Daemon, eventView, normalise, OURS, outcome, startExportDaemon } from './export-daemon.js';
import { qemuImg, qemuIo, run, withTempDir } from './qemu.js';

/** A command with its arguments (`${DIR}` in strings is the chain's directory), or a step that waits or looks. */
export type Step =
  | [command: string, args?: Record<string, unknown>]
  /** Until a JOB_STATUS_CHANGE of this job to this status (default null) has come (or, with `event`, that event for it), after what the last wait found. */
  | { wait: string; status?: string; event?: string }
  /**
   * Until query-block-jobs shows the job at `offset`, where its first copy
   * ends: a speed of 1 byte/s then holds it there. (Steps that copy
   * nothing go by without a sleep, so any offset short of it is passing.)
   */
  | { started: string; offset: number }
  | { sh: (dir: string) => Promise<unknown> }
  /** A look through the daemon's monitor, recorded as it returns. */
  | { look: (c: QmpClient) => Promise<unknown> };

/** 1 MiB images: base holds 1s at [0, 256k), mid 2s at [128k, 384k) and zeroes at [512k, 576k), top 3s at [256k, 320k). */
export async function makeChain(dir: string): Promise<void> {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '1M'));
  await ok(qemuIo('-c', 'write -q -P 1 0 256k', join(dir, 'base.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'mid.qcow2')));
  await ok(qemuIo('-c', 'write -q -P 2 128k 256k', '-c', 'write -q -z 512k 64k', join(dir, 'mid.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')));
  await ok(qemuIo('-c', 'write -q -P 3 256k 64k', join(dir, 'top.qcow2')));
  // What a guest reads through top and through mid, for comparing afterwards.
  await ok(qemuImg('convert', '-O', 'raw', join(dir, 'top.qcow2'), join(dir, 'top-view.raw')));
  await ok(qemuImg('convert', '-O', 'raw', join(dir, 'mid.qcow2'), join(dir, 'mid-view.raw')));
}

export const file = (name: string, nodeName?: string) => ({ driver: 'file', filename: `\${DIR}/${name}`, ...(nodeName ? { 'node-name': nodeName } : {}) });

export interface ChainOptions {
  topReadOnly?: boolean;
  /** One layer's image behind an inline blkdebug node failing as `rule` says. */
  failing?: { layer: 'base' | 'mid'; rule: Record<string, unknown> };
}

/** The chain as named nodes (base and mid read-only), each over a named file node: `blockdev-add` steps. */
export function explicitChain(o: ChainOptions = {}): Step[] {
  const image = (layer: 'base' | 'mid' | 'top') =>
    o.failing?.layer === layer ? { driver: 'blkdebug', image: file(`${layer}.qcow2`), 'inject-error': [o.failing.rule] } : file(`${layer}.qcow2`, `${layer}-file`);
  return [
    ['blockdev-add', { driver: 'qcow2', 'node-name': 'base', 'read-only': true, file: image('base') }],
    ['blockdev-add', { driver: 'qcow2', 'node-name': 'mid', 'read-only': true, backing: 'base', file: image('mid') }],
    ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', backing: 'mid', ...(o.topReadOnly ? { 'read-only': true } : {}), file: image('top') }],
  ];
}

/**
 * query-named-block-nodes reduced to each node's name, driver and
 * read-only state, for sessions that reopen a node over blkdebug: QEMU
 * rebuilds the blkdebug node's options then, in another order, and where
 * two of its keys share a QDict bucket (inject-error's event and errno do)
 * its json: name changes — and with it whether the overlays' backing
 * names still match. blockemu keeps the order it was given.
 */
export const nodesSummary: Step = {
  look: async (c) => {
    const nodes = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
    return nodes.map((n) => ({ node: n['node-name'], drv: n['drv'], ro: n['ro'] }));
  },
};

function inDir<T>(v: T, dir: string): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v).replaceAll('${DIR}', dir)) as T);
}

type EventView = { event: string; data: unknown };

/**
 * Plays the steps on a fresh chain, then quits and runs `after` on the
 * images. The log: every command's outcome and every look, in order, then
 * all events, then what `after` found.
 */
export async function playChain(which: Daemon, steps: readonly Step[], after: (dir: string) => Promise<unknown>): Promise<unknown[]> {
  return withTempDir(async (root) => {
    const dir = join(root, 'd');
    await mkdir(dir);
    await makeChain(dir);
    const d = await startExportDaemon(which, { dir: root });
    const log: unknown[] = [];
    const events: EventView[] = [];
    const c = d.client;
    // Waits look at the events after the one the last wait found, so a job id used twice waits for its second run.
    let from = 0;
    const collect = () => {
      events.push(...c.takeEvents().map(eventView));
      return events;
    };
    try {
      for (const s of steps) {
        if (Array.isArray(s)) log.push(await outcome(c, root, s[0], inDir(s[1], dir)));
        else if ('wait' in s) from = await waitEvent(s, collect, from);
        else if ('started' in s) await waitStarted(c, s.started, s.offset);
        else if ('look' in s) log.push(normalise(await s.look(c), root));
        else log.push(normalise(await s.sh(dir), root));
        collect();
      }
    } finally {
      events.push(...(await d.quit()));
    }
    // SHUTDOWN is qsd's own, at quit.
    log.push({ events: events.filter((e) => e.event !== 'SHUTDOWN') });
    log.push(normalise(await after(dir), root));
    return JSON.parse(JSON.stringify(log).replace(/#block\d+/g, '#block'));
  });
}

/** Waits for the first matching event at or after `from`; returns the index after it. */
async function waitEvent(s: { wait: string; status?: string; event?: string }, collect: () => EventView[], from: number): Promise<number> {
  const match = (e: EventView) => {
    const data = (e.data ?? {}) as Record<string, unknown>;
    if (s.event !== undefined) return e.event === s.event && (data['device'] ?? data['id']) === s.wait;
    return e.event === 'JOB_STATUS_CHANGE' && data['id'] === s.wait && data['status'] === (s.status ?? 'null');
  };
  for (const deadline = Date.now() + 20_000; ; await sleep(10)) {
    const i = collect().findIndex((e, k) => k >= from && match(e));
    if (i >= 0) return i + 1;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(s)}`);
  }
}

/** Until the job's offset is `offset` (a job that never gets there fails the session). */
async function waitStarted(c: { execute<T>(cmd: string): Promise<T> }, id: string, offset: number): Promise<void> {
  let now = 0;
  for (const deadline = Date.now() + 20_000; now !== offset; await sleep(10)) {
    now = (await c.execute<Array<{ device: string; offset: number }>>('query-block-jobs')).find((j) => j.device === id)?.offset ?? 0;
    if (now > offset || Date.now() > deadline) throw new Error(`job ${id} is at offset ${now}, not at the end of its first copy (${offset})`);
  }
}

/** qsd first, then blockemu (or qsd again with NBD_TEST_OURS=qsd): the logs must be equal. */
export async function compareChain(steps: readonly Step[], after: (dir: string) => Promise<unknown>): Promise<unknown[]> {
  const theirs = await playChain('qsd', steps, after);
  const ours = await playChain(OURS, steps, after);
  expect(ours).toEqual(theirs);
  return theirs;
}

/**
 * What QEMU's tools say of the chain's images: the backing chain of each
 * (names and formats as written in the headers), whether `qemu-img check`
 * finds them clean, their allocation (without host offsets), and whether
 * each named image still reads as its recorded view.
 */
export function imagesReport(names: readonly string[], views: Readonly<Record<string, string>> = {}) {
  return async (dir: string): Promise<unknown> => {
    const out: Record<string, unknown> = {};
    for (const name of names) {
      const path = join(dir, name);
      const info = await run('qemu-img', ['info', '--backing-chain', '--output=json', path]);
      const chain = info.code === 0 ? (JSON.parse(info.stdout) as Array<Record<string, unknown>>) : info.stderr;
      const check = await run('qemu-img', ['check', '--output=json', path]);
      const checked = check.code === 0 || check.code === 3 ? (JSON.parse(check.stdout) as Record<string, unknown>) : {};
      const map = await run('qemu-img', ['map', '--output=json', path]);
      out[name] = {
        chain: Array.isArray(chain)
          ? chain.map((i) => ({ filename: i['filename'], backing: i['backing-filename'] ?? null, full: i['full-backing-filename'] ?? null, format: i['backing-filename-format'] ?? null }))
          : chain,
        check: { code: check.code, corruptions: checked['corruptions'] ?? 0, leaks: checked['leaks'] ?? 0 },
        map: map.code === 0 ? (JSON.parse(map.stdout) as Array<Record<string, unknown>>).map(({ offset: _o, ...rest }) => rest) : map.stderr,
      };
    }
    for (const [name, view] of Object.entries(views)) {
      out[`${name} reads as ${view}`] = (await run('qemu-img', ['compare', '-q', '-F', 'raw', join(dir, name), join(dir, view)])).code;
    }
    return out;
  };
}
