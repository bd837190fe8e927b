/**
 * A QMP session played on qemu-storage-daemon and on blockemu with the
 * same images (each in a directory of its own): QMP commands, waits for
 * jobs, and shell steps that look at the images with QEMU's tools. The
 * outcomes and the events, normalised, must be equal. Strings may say
 * `${DIR}` for the image directory.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { type Daemon, normalise, OURS, outcome, startExportDaemon } from './export-daemon.js';
import { run, withTempDir } from './qemu.js';

export type Step =
  | [command: string, args?: Record<string, unknown>]
  | { waitJob: string }
  | { sh: (dir: string) => Promise<unknown> };

/** Plays the steps on images `setup` makes in a fresh directory; every outcome, the temp dir and generated node names normalised. */
export async function play(which: Daemon, steps: readonly Step[], setup: (dir: string) => Promise<void>): Promise<unknown[]> {
  return withTempDir(async (root) => {
    const dir = join(root, 'd');
    await mkdir(dir);
    await setup(dir);
    const d = await startExportDaemon(which, { dir: root });
    const log: unknown[] = [];
    try {
      for (const s of inDir(steps, dir)) {
        if (Array.isArray(s)) log.push(await outcome(d.client, root, s[0], s[1]));
        else if ('waitJob' in s) await d.client.waitForEvent('JOB_STATUS_CHANGE', (e) => (e.data as { id?: string; status?: string }).id === s.waitJob && (e.data as { status?: string }).status === 'null', 10_000);
        else log.push(normalise(await s.sh(dir), root));
      }
    } finally {
      log.push({ events: (await d.quit()).filter((e) => e.event !== 'SHUTDOWN') });
    }
    return JSON.parse(JSON.stringify(log).replace(/#block\d+/g, '#block'));
  });
}

/** Plays the session on both daemons (at once: they share nothing) and expects the same log; returns it. */
export async function compare(steps: readonly Step[], setup: (dir: string) => Promise<void>, view: (log: unknown[]) => unknown[] = (l) => l): Promise<unknown[]> {
  const [theirs, ours] = await Promise.all([play('qsd', steps, setup), play(OURS, steps, setup)]);
  expect(view(ours)).toEqual(view(theirs));
  return theirs;
}

/** A file node's options for an image of the session's directory. */
export const file = (name: string) => ({ driver: 'file', filename: `\${DIR}/${name}` });

/** `${DIR}` in string arguments becomes the session's image directory. */
function inDir(steps: readonly Step[], dir: string): Step[] {
  return steps.map((s) => (Array.isArray(s) ? ([s[0], s[1] && JSON.parse(JSON.stringify(s[1]).replaceAll('${DIR}', dir))] as Step) : s));
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
