/**
 * Image locks between processes: blockemu's daemon and QEMU's tools refuse
 * each other exactly as two QEMU processes do. Each case is played twice,
 * once with qemu-storage-daemon and once with blockemu in the daemon's
 * place, against the same QEMU process on the other side (qemu-io as a
 * requester, or qemu-io holding the image while the daemon asks), and the
 * answers must be equal — and must show that something was refused, so a
 * daemon that took no locks at all would fail.
 */
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, outcome, startExportDaemon } from '../helpers/export-daemon.js';
import { holdWithQemuIo, lockedBytes, qemuIoOpens } from '../helpers/locks.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

/** What qemu-io says when it opens the image read-write, read-only, and read-only with -U. */
async function qemuIoView(fmt: string, path: string): Promise<unknown> {
  return {
    rw: await qemuIoOpens(['-f', fmt], path),
    ro: await qemuIoOpens(['-r', '-f', fmt], path),
    shared: await qemuIoOpens(['-U', '-r', '-f', fmt], path),
  };
}

interface Holding {
  fmt: 'raw' | 'qcow2';
  readOnly: boolean;
  locking?: 'on' | 'off' | 'auto';
}

/** A daemon holding the image with a --blockdev, then what qemu-io makes of it; then the same after blockdev-del. */
async function daemonHolds(which: Daemon, h: Holding): Promise<unknown> {
  return withTempDir(async (dir) => {
    const path = join(dir, `img.${h.fmt}`);
    expect((await qemuImg('create', '-q', '-f', h.fmt, path, '1M')).code).toBe(0);
    const fileOpts = `file.driver=file,file.filename=${path}${h.locking ? `,file.locking=${h.locking}` : ''}`;
    const d = await startExportDaemon(which, { dir, blockdevs: [`driver=${h.fmt},node-name=n,read-only=${h.readOnly ? 'on' : 'off'},${fileOpts}`] });
    try {
      const held = { bytes: await lockedBytes(path), qemuIo: await qemuIoView(h.fmt, path) };
      await outcome(d.client, dir, 'blockdev-del', { 'node-name': 'n' });
      // Locks go with the node (the descriptor closes); the next open must not be refused.
      const after = { bytes: await lockedBytes(path), qemuIo: await qemuIoView(h.fmt, path) };
      return JSON.parse(JSON.stringify({ held, after }).replaceAll(dir, '${TMP}'));
    } finally {
      await d.quit();
    }
  });
}

/** qemu-io holds the image with `args`; what the daemon's blockdev-add answers, read-write and read-only, and its locks after. */
async function qemuIoHolds(which: Daemon, fmt: 'raw' | 'qcow2', args: string[]): Promise<unknown> {
  return withTempDir(async (dir) => {
    const path = join(dir, `img.${fmt}`);
    expect((await qemuImg('create', '-q', '-f', fmt, path, '1M')).code).toBe(0);
    const holder = await holdWithQemuIo(['-f', fmt, ...args], path);
    const d = await startExportDaemon(which, { dir });
    try {
      const add = (name: string, readOnly: boolean) =>
        outcome(d.client, dir, 'blockdev-add', { driver: fmt, 'node-name': name, 'read-only': readOnly, file: { driver: 'file', filename: path } });
      const rw = await add('rw', false);
      const ro = await add('ro', true);
      const shared = await outcome(d.client, dir, 'blockdev-add', {
        driver: fmt,
        'node-name': 'shared',
        'read-only': true,
        'force-share': true,
        file: { driver: 'file', filename: path },
      });
      return { rw, ro, shared, bytes: await lockedBytes(path) };
    } finally {
      await d.quit();
      await holder.stop();
    }
  });
}

const holdings: Holding[] = [
  { fmt: 'qcow2', readOnly: false },
  { fmt: 'qcow2', readOnly: true },
  { fmt: 'raw', readOnly: false },
  { fmt: 'qcow2', readOnly: false, locking: 'off' },
  { fmt: 'qcow2', readOnly: false, locking: 'on' },
];

describe.skipIf(!qemu.available || !qemu.storageDaemon)('image locks between blockemu and QEMU processes', () => {
  it.each(holdings)('a daemon holding %o: qemu-io is refused or let in as by qemu-storage-daemon, and let in after blockdev-del', async (h) => {
    const theirs = await daemonHolds('qsd', h);
    expect(await daemonHolds('blockemu', h)).toEqual(theirs);
    if (h.fmt === 'qcow2' && !h.readOnly && h.locking !== 'off') expect(JSON.stringify(theirs)).toContain('Failed to get \\"write\\" lock');
  }, 60_000);

  it.each([
    ['qcow2', []],
    ['qcow2', ['-r']],
    ['qcow2', ['-U', '-r']],
    ['raw', []],
  ] as const)('qemu-io -f %s %o holding the image: blockdev-add answers as qemu-storage-daemon does', async (fmt, args) => {
    const theirs = await qemuIoHolds('qsd', fmt, [...args]);
    expect(await qemuIoHolds('blockemu', fmt, [...args])).toEqual(theirs);
  }, 60_000);

  it('qemu-storage-daemon and blockemu refuse each other both ways', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'img.qcow2');
      expect((await qemuImg('create', '-q', '-f', 'qcow2', path, '1M')).code).toBe(0);
      const node = { driver: 'qcow2', 'node-name': 'n', file: { driver: 'file', filename: path } };
      const answers: unknown[] = [];
      for (const [holder, asker] of [
        ['qsd', 'blockemu'],
        ['blockemu', 'qsd'],
      ] as const) {
        const hd = await startExportDaemon(holder, { dir: await mkdtemp(join(dir, 'h-')) });
        const ad = await startExportDaemon(asker, { dir: await mkdtemp(join(dir, 'a-')) });
        try {
          expect(await outcome(hd.client, dir, 'blockdev-add', node)).toEqual({ return: {} });
          answers.push(await outcome(ad.client, dir, 'blockdev-add', node));
          answers.push(await outcome(ad.client, dir, 'blockdev-add', { ...node, 'read-only': true }));
        } finally {
          await ad.quit();
          await hd.quit();
        }
      }
      expect(answers[0]).toEqual({ error: { class: 'GenericError', desc: 'Failed to get "write" lock' } });
      expect(answers[1]).toEqual({ error: { class: 'GenericError', desc: 'Failed to get shared "write" lock' } });
      expect(answers.slice(2)).toEqual(answers.slice(0, 2));
    });
  }, 60_000);
});
