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
import { type Daemon, normalise, OURS, outcome, startExportDaemon } from './export-daemon.js';
import { run, withTempDir } from './qemu.js';

export type Step =
  | [command: string, args?: Record<string, unknown>]
  /** Waits until the job's JOB_STATUS_CHANGE says `status` (default: null, the job is gone). */
  | { waitJob: string; status?: string }
  /** A step outside QMP (qemu-img, qemu-io); its result is recorded. */
  | { sh: (dir: string) => Promise<unknown> };

/** `${DIR}` in string arguments becomes the session's image directory. */
function inDir(steps: readonly Step[], dir: string): Step[] {
  return steps.map((s) => (Array.isArray(s) ? ([s[0], s[1] && JSON.parse(JSON.stringify(s[1]).replaceAll('${DIR}', dir))] as Step) : s));
}

/** A file node of an image in the session's directory. */
export const file = (name: string) => ({ driver: 'file', filename: `\${DIR}/${name}` });

/** Plays the steps on images `setup` makes in a directory of its own. */
export async function play(which: Daemon, setup: (dir: string) => Promise<void>, steps: readonly Step[]): Promise<unknown[]> {
  return withTempDir(async (root) => {
    const dir = join(root, 'd');
    await mkdir(dir);
    await setup(dir);
    const d = await startExportDaemon(which, { dir: root });
    const log: unknown[] = [];
    try {
      for (const s of inDir(steps, dir)) {
        if (Array.isArray(s)) log.push(await outcome(d.client, root, s[0], s[1]));
        else if ('waitJob' in s) {
          const status = s.status ?? 'null';
          await d.client.waitForEvent('JOB_STATUS_CHANGE', (e) => (e.data as { id?: string }).id === s.waitJob && (e.data as { status?: string }).status === status, 10_000);
        } else log.push(normalise(await s.sh(dir), root));
      }
    } finally {
      log.push({ events: (await d.quit()).filter((e) => e.event !== 'SHUTDOWN') });
    }
    return JSON.parse(JSON.stringify(log).replace(/#block\d+/g, '#block'));
  });
}

/** The session on qemu-storage-daemon, then on blockemu: equal outcomes and events. Returns QEMU's. */
export async function compareSessions(setup: (dir: string) => Promise<void>, steps: readonly Step[], view: (log: unknown[]) => unknown[] = (l) => l): Promise<unknown[]> {
  const theirs = view(await play('qsd', setup, steps));
  const ours = view(await play(OURS, setup, steps));
  expect(ours).toEqual(theirs);
  return theirs;
}

/** What qemu-img says of an image without taking locks: its map and backing file. */
export const describeImage = (name: string) => async (dir: string) => {
  const map = await run('qemu-img', ['map', '-U', '--output=json', join(dir, name)]);
  const info = await run('qemu-img', ['info', '-U', '--output=json', join(dir, name)]);
  const i = info.code === 0 ? (JSON.parse(info.stdout) as Record<string, unknown>) : {};
  return { map: map.code === 0 ? JSON.parse(map.stdout) : map.stderr, backing: i['backing-filename'] ?? null, format: i['backing-filename-format'] ?? null };
};

/** What qemu-io (which takes locks) says when it opens an image read-write and read-only. */
export const opens = (name: string, format = 'qcow2') => async (dir: string) => ({
  rw: (await run('qemu-io', ['-f', format, '-c', 'read 0 512', join(dir, name)])).stderr,
  ro: (await run('qemu-io', ['-r', '-f', format, '-c', 'read 0 512', join(dir, name)])).stderr,
});
