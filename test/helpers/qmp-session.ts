/**
 * QMP sessions played the same way on qemu-storage-daemon and on blockemu
 * (graph, mirror, … tests): steps run in order on a daemon started in a
 * directory of its own with images made by `setup`; every outcome, with
 * the directory and generated node names normalised, is recorded, and the
 * events of the whole session come last.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import type { QmpClient } from '../../src/qmp/client.js';
import { type Daemon, eventView, normalise, OURS, outcome, startExportDaemon } from './export-daemon.js';
import { run, withTempDir } from './qemu.js';

export type Step =
  | [command: string, args?: Record<string, unknown>]
  /** Waits until the job's JOB_STATUS_CHANGE says `status` (default: null, the job is gone), after what the last wait found. */
  | { waitJob: string; status?: string }
  /** Waits until `event` (BLOCK_JOB_ERROR, BLOCK_JOB_COMPLETED…) comes for the job, after what the last wait found. */
  | { waitJob: string; event: string }
  /**
   * Waits until query-block-jobs shows the job at `offset`, where its
   * first copy ends: a speed of 1 byte/s then holds it there. (Steps that
   * copy nothing go by without a sleep, so any offset short of it is
   * passing; a job that never gets there fails the session.)
   */
  | { started: string; offset: number }
  /** A look through the daemon's monitor, recorded as it returns. */
  | { look: (c: QmpClient) => Promise<unknown> }
  /** A step outside QMP (qemu-img, qemu-io); its result is recorded. */
  | { sh: (dir: string) => Promise<unknown> };

type EventView = { event: string; data: unknown };

/** `${DIR}` in string arguments becomes the session's image directory. */
function inDir(steps: readonly Step[], dir: string): Step[] {
  return steps.map((s) => (Array.isArray(s) ? ([s[0], s[1] && JSON.parse(JSON.stringify(s[1]).replaceAll('${DIR}', dir))] as Step) : s));
}

/** A file node of an image in the session's directory (named, if `nodeName` is given). */
export const file = (name: string, nodeName?: string) => ({ driver: 'file', filename: `\${DIR}/${name}`, ...(nodeName ? { 'node-name': nodeName } : {}) });

/** What a session may do after the daemon quit: look at the images (qemu-img), recorded last. */
export type After = (dir: string) => Promise<unknown>;

/**
 * Plays the steps on images `setup` makes in a directory of its own. The
 * events of the whole session come after the steps' outcomes (waits only
 * look at them), then what `after` finds once the daemon has quit.
 */
export async function play(which: Daemon, setup: (dir: string) => Promise<void>, steps: readonly Step[], after?: After): Promise<unknown[]> {
  return withTempDir(async (root) => {
    const dir = join(root, 'd');
    await mkdir(dir);
    await setup(dir);
    const d = await startExportDaemon(which, { dir: root });
    const c = d.client;
    const log: unknown[] = [];
    const events: EventView[] = [];
    const collect = () => {
      events.push(...c.takeEvents().map(eventView));
      return events;
    };
    // Each wait looks at the events after the one the last wait found, so a job id used twice waits for its second run.
    let from = 0;
    try {
      for (const s of inDir(steps, dir)) {
        if (Array.isArray(s)) log.push(await outcome(c, root, s[0], s[1]));
        else if ('waitJob' in s) from = await waitEvent(s, collect, from);
        else if ('started' in s) await waitStarted(c, s.started, s.offset);
        else if ('look' in s) log.push(normalise(await s.look(c), root));
        else log.push(normalise(await s.sh(dir), root));
        collect();
      }
    } finally {
      events.push(...(await d.quit()));
    }
    log.push({ events: events.filter((e) => e.event !== 'SHUTDOWN') });
    if (after) log.push(normalise(await after(dir), root));
    return JSON.parse(JSON.stringify(log).replace(/#block\d+/g, '#block'));
  });
}

/** Waits for the first matching event at or after `from`; returns the index after it. */
async function waitEvent(s: { waitJob: string; status?: string; event?: string }, collect: () => EventView[], from: number): Promise<number> {
  const match = (e: EventView) => {
    const data = (e.data ?? {}) as Record<string, unknown>;
    if (s.event !== undefined) return e.event === s.event && (data['device'] ?? data['id']) === s.waitJob;
    return e.event === 'JOB_STATUS_CHANGE' && data['id'] === s.waitJob && data['status'] === (s.status ?? 'null');
  };
  for (const deadline = Date.now() + 20_000; ; await sleep(10)) {
    const i = collect().findIndex((e, k) => k >= from && match(e));
    if (i >= 0) return i + 1;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(s)}`);
  }
}

async function waitStarted(c: QmpClient, id: string, offset: number): Promise<void> {
  let now = 0;
  for (const deadline = Date.now() + 20_000; now !== offset; await sleep(10)) {
    now = (await c.execute<Array<{ device: string; offset: number }>>('query-block-jobs')).find((j) => j.device === id)?.offset ?? 0;
    if (now > offset || Date.now() > deadline) throw new Error(`job ${id} is at offset ${now}, not at the end of its first copy (${offset})`);
  }
}

/** The session on qemu-storage-daemon, then on blockemu: equal outcomes and events. Returns QEMU's. */
export async function compareSessions(setup: (dir: string) => Promise<void>, steps: readonly Step[], view: (log: unknown[]) => unknown[] = (l) => l, after?: After): Promise<unknown[]> {
  const theirs = view(await play('qsd', setup, steps, after));
  const ours = view(await play(OURS, setup, steps, after));
  expect(ours).toEqual(theirs);
  return theirs;
}

/** What qemu-img says of an image without taking locks: its map (guest offsets, allocation, depth) and backing file. */
export const describeImage = (name: string) => async (dir: string) => {
  const map = await run('qemu-img', ['map', '-U', '--output=json', join(dir, name)]);
  const info = await run('qemu-img', ['info', '-U', '--output=json', join(dir, name)]);
  const i = info.code === 0 ? (JSON.parse(info.stdout) as Record<string, unknown>) : {};
  // Where a cluster lands in the file (`offset`) follows the order parallel copies finish in, in QEMU too: only what the guest sees is compared.
  const extents = map.code === 0 ? (JSON.parse(map.stdout) as Array<Record<string, unknown>>).map(({ offset: _host, ...e }) => e) : map.stderr;
  return { map: extents, backing: i['backing-filename'] ?? null, format: i['backing-filename-format'] ?? null };
};

/**
 * describeImage without the host offsets of the map: where clusters land
 * depends on the order concurrent copies finish (in QEMU too), so extents
 * that qemu-img splits only because their clusters lie apart are joined.
 */
export const contents = (name: string) => async (dir: string) => {
  const d = await describeImage(name)(dir);
  if (!Array.isArray(d.map)) return d;
  const map: Array<Record<string, unknown>> = [];
  for (const { offset: _host, ...e } of d.map as Array<Record<string, unknown>>) {
    const last = map[map.length - 1];
    const same = last && (['depth', 'present', 'zero', 'data'] as const).every((k) => last[k] === e[k]) && (last['start'] as number) + (last['length'] as number) === e['start'];
    if (same) last['length'] = (last['length'] as number) + (e['length'] as number);
    else map.push(e);
  }
  return { ...d, map };
};

/** `qemu-img compare` of two images in the session's directory, without locks. */
export const sameImages = (a: string, b: string) => async (dir: string) => (await run('qemu-img', ['compare', '-U', join(dir, a), join(dir, b)])).stdout;

/** What qemu-io (which takes locks) says when it opens an image read-write and read-only. */
export const opens = (name: string, format = 'qcow2') => async (dir: string) => ({
  rw: (await run('qemu-io', ['-f', format, '-c', 'read 0 512', join(dir, name)])).stderr,
  ro: (await run('qemu-io', ['-r', '-f', format, '-c', 'read 0 512', join(dir, name)])).stderr,
});

/**
 * A guest write (a qemu-io command) through the NBD export named `name`
 * (an export's name is its node's unless given) of a server listening on
 * `nbd.sock` in the session's directory. A write that fails fails the
 * session: both daemons failing alike would hide that nothing was written.
 */
export const nbdWrite = (name: string, cmd: string) => async (dir: string) => {
  const r = await run('qemu-io', ['-f', 'raw', '-c', cmd, `nbd+unix:///${name}?socket=${join(dir, 'nbd.sock')}`]);
  if (r.code !== 0) throw new Error(`qemu-io ${cmd} on export ${name}: ${r.stderr}`);
  return r.code;
};
