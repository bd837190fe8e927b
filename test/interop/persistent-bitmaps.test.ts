/**
 * Persistent dirty bitmaps against QEMU 7.2: bitmaps QEMU stored in a qcow2
 * image load in blockemu as they load in qemu-storage-daemon; bitmaps
 * blockemu stores (new ones, changed ones, removed ones) load in
 * qemu-storage-daemon with the same bits, and the image passes
 * `qemu-img check`; a daemon killed while holding an image leaves its
 * bitmaps flagged in use, which both daemons then report as inconsistent.
 */
import { copyFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { QmpClient } from '../../src/qmp/client.js';
import { QmpError } from '../../src/qmp/error.js';
import { bitmapView, withDaemon } from '../helpers/bitmap-daemon.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

type Outcome = { return: unknown } | { error: string };

async function outcome(c: QmpClient, cmd: string, args: Record<string, unknown>): Promise<Outcome> {
  try {
    return { return: await c.execute(cmd, args) };
  } catch (err) {
    if (err instanceof QmpError) return { error: err.desc };
    throw err;
  }
}

/** A 64 MiB image with two bitmaps QEMU made: 'old' (recording, 3 clusters dirty) and 'off' (disabled, 128 KiB granularity). */
async function imageWithBitmaps(path: string): Promise<void> {
  await qemuImg('create', '-q', '-f', 'qcow2', path, '64M');
  await qemuImg('bitmap', '--add', path, 'old');
  await qemuImg('bitmap', '--add', '-g', '131072', '--disable', path, 'off');
  await qemuIo('-f', 'qcow2', '-c', 'write -P 1 1M 128k', '-c', 'write -P 2 10M 64k', path);
}

async function storedBitmaps(path: string, shared = false): Promise<unknown> {
  const r = await qemuImg('info', ...(shared ? ['-U'] : []), '--output=json', path);
  return (JSON.parse(r.stdout) as { 'format-specific': { data: { bitmaps?: unknown } } })['format-specific'].data.bitmaps;
}

async function checkClean(path: string): Promise<void> {
  const r = await qemuImg('check', path);
  expect(r.code, r.stdout + r.stderr).toBe(0);
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('persistent dirty bitmaps (qemu-storage-daemon as the reference)', () => {
  it('bitmaps QEMU stored load in blockemu as in qemu-storage-daemon (flagged in use while open)', async () => {
    await withTempDir(async (dir) => {
      await imageWithBitmaps(join(dir, 'q.qcow2'));
      await copyFile(join(dir, 'q.qcow2'), join(dir, 'b.qcow2'));
      const want = await withDaemon('qsd', join(dir, 'q.qcow2'), bitmapView);
      const got = await withDaemon('blockemu', join(dir, 'b.qcow2'), bitmapView);
      expect(got).toEqual(want);
      expect(want.dirty).toHaveLength(2);
      // Both stored them back unchanged at close: in use no more.
      expect(await storedBitmaps(join(dir, 'b.qcow2'))).toEqual(await storedBitmaps(join(dir, 'q.qcow2')));
      await checkClean(join(dir, 'b.qcow2'));
    });
  });

  it('what blockemu stores, qemu-storage-daemon loads with the same bits; refusals as QEMU words them', async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'b.qcow2');
      await imageWithBitmaps(img);
      const refused = [
        ['block-dirty-bitmap-add', { node: 'disk', name: 'old', persistent: true }],
        ['block-dirty-bitmap-add', { node: 'disk-file', name: 'x', persistent: true }],
        ['block-dirty-bitmap-add', { node: 'disk', name: 'y'.repeat(1024), persistent: true }],
      ] as const;
      // qemu-storage-daemon 7.2 has no human-monitor-command: the guest writes happen on blockemu's side only.
      const session = (writes: boolean) => async (c: QmpClient) => {
        await c.execute('block-dirty-bitmap-add', { node: 'disk', name: 'new', persistent: true });
        await c.execute('block-dirty-bitmap-add', { node: 'disk', name: 'dis', persistent: true, disabled: true, granularity: 4096 });
        await c.execute('block-dirty-bitmap-add', { node: 'disk', name: 'gone', persistent: false });
        if (writes) {
          await c.execute('human-monitor-command', { 'command-line': 'qemu-io disk "write -P 3 20M 192k"' });
          await c.execute('human-monitor-command', { 'command-line': 'qemu-io disk "write -z 1M 64k"' });
        }
        await c.execute('block-dirty-bitmap-remove', { node: 'disk', name: 'off' });
        return { view: await bitmapView(c), refusals: await Promise.all(refused.map(([cmd, a]) => outcome(c, cmd, a))) };
      };
      const before = await withDaemon('blockemu', img, session(true));
      await checkClean(img);
      await imageWithBitmaps(join(dir, 'q.qcow2'));
      const reference = await withDaemon('qsd', join(dir, 'q.qcow2'), session(false));
      // The same directory as QEMU writes (new entries after the old, newest bitmap first) and the same refusals.
      expect(await storedBitmaps(img)).toEqual(await storedBitmaps(join(dir, 'q.qcow2')));
      expect(await storedBitmaps(img)).toHaveLength(3);
      expect(before.refusals).toEqual(reference.refusals);
      // The non-persistent bitmap is not carried over; the others come back with the same bits (listed in directory order now).
      const byName = (list: unknown) => [...(list as Array<{ name: string; count: number }>)].sort((a, b) => a.name.localeCompare(b.name));
      const persistent = byName(before.view.dirty).filter((b) => b.name !== 'gone');
      const reloaded = await withDaemon('qsd', img, bitmapView);
      expect(byName(reloaded.dirty)).toEqual(persistent);
      expect(persistent.find((b) => b.name === 'new')?.count).toBe(4 * 65536);
      expect(persistent.find((b) => b.name === 'dis')?.count).toBe(0);
      await checkClean(img);
      expect(await withDaemon('blockemu', img, bitmapView)).toEqual(reloaded);
    });
  });

  it('a daemon killed while holding the image leaves its bitmaps in use: both daemons call them inconsistent, and remove them alike', async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'b.qcow2');
      await imageWithBitmaps(img);
      await withDaemon('blockemu', img, (c) => c.execute('block-dirty-bitmap-add', { node: 'disk', name: 'lost', persistent: true }), { kill: true });
      // 'lost' was never stored; the two loaded ones stay flagged in use.
      expect(await storedBitmaps(img)).toEqual([
        { flags: ['in-use', 'auto'], name: 'old', granularity: 65536 },
        { flags: ['in-use'], name: 'off', granularity: 131072 },
      ]);
      await copyFile(img, join(dir, 'q.qcow2'));
      const session = async (c: QmpClient) => {
        const view = await bitmapView(c);
        const refused = await outcome(c, 'block-dirty-bitmap-clear', { node: 'disk', name: 'old' });
        const removed = await outcome(c, 'block-dirty-bitmap-remove', { node: 'disk', name: 'off' });
        return { view, refused, removed };
      };
      const want = await withDaemon('qsd', join(dir, 'q.qcow2'), session);
      const got = await withDaemon('blockemu', img, session);
      expect(got).toEqual(want);
      expect((want.view.dirty as Array<{ inconsistent?: boolean }>).every((b) => b.inconsistent === true)).toBe(true);
      expect(await storedBitmaps(img)).toEqual(await storedBitmaps(join(dir, 'q.qcow2')));
      await checkClean(img);
    });
  });

  it("a snapshot stores the old top's bitmaps at once and makes them read-only, as QEMU reopens it", async () => {
    await withTempDir(async (dir) => {
      const session = (tag: string) => async (c: QmpClient) => {
        await c.execute('block-dirty-bitmap-add', { node: 'disk', name: 'new', persistent: true });
        await c.execute('blockdev-snapshot-sync', { 'node-name': 'disk', 'snapshot-file': join(dir, `ov-${tag}.qcow2`), 'snapshot-node-name': 'ov', format: 'qcow2' });
        const view = await bitmapView(c);
        const refused = await outcome(c, 'block-dirty-bitmap-clear', { node: 'disk', name: 'old' });
        return { view, refused, stored: await storedBitmaps(join(dir, `${tag}.qcow2`), true) };
      };
      for (const tag of ['q', 'b']) await imageWithBitmaps(join(dir, `${tag}.qcow2`));
      const want = await withDaemon('qsd', join(dir, 'q.qcow2'), session('q'));
      const got = await withDaemon('blockemu', join(dir, 'b.qcow2'), session('b'));
      expect(got).toEqual(want);
      expect(want.refused).toEqual({ error: "Bitmap 'old' is readonly and cannot be modified" });
      expect(await storedBitmaps(join(dir, 'b.qcow2'))).toEqual(await storedBitmaps(join(dir, 'q.qcow2')));
      await checkClean(join(dir, 'b.qcow2'));
    });
  });

  it("an image whose bitmap directory breaks the rules does not open, in QEMU's words, and leaves its file node free", async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'bad.qcow2');
      await qemuImg('create', '-q', '-f', 'qcow2', img, '4M');
      await qemuImg('bitmap', '--add', img, 'b');
      // The entry's granularity bits (byte 17 of the entry) set to 40: more than the 31 QEMU allows.
      const fh = await open(img, 'r+');
      const head = new Uint8Array(65536);
      await fh.read(head, 0, head.length, 0);
      const v = new DataView(head.buffer);
      let dirOffset = 0;
      for (let off = v.getUint32(100); v.getUint32(off) !== 0; off += 8 + Math.ceil(v.getUint32(off + 4) / 8) * 8) {
        if (v.getUint32(off) === 0x23852875) dirOffset = Number(v.getBigUint64(off + 24));
      }
      await fh.write(new Uint8Array([40]), 0, 1, dirOffset + 17);
      await fh.close();
      const session = async (c: QmpClient) => [
        await outcome(c, 'blockdev-add', { driver: 'file', 'node-name': 'f', filename: img }),
        await outcome(c, 'blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: 'f' }),
        await outcome(c, 'blockdev-del', { 'node-name': 'f' }),
      ];
      const want = await withDaemon('qsd', img, session, { bare: true });
      expect(await withDaemon('blockemu', img, session, { bare: true })).toEqual(want);
      expect(want[1]).toEqual({ error: "Bitmap 'b' doesn't satisfy the constraints" });
    });
  });

  it('refuses what qcow2 cannot store as QEMU does: v2 images, bitmaps too large for the directory', async () => {
    await withTempDir(async (dir) => {
      const steps = [
        ['block-dirty-bitmap-add', { node: 'disk', name: 'a', persistent: true }],
        ['block-dirty-bitmap-add', { node: 'disk', name: 'b', persistent: true, granularity: 512 }],
      ] as const;
      const results: Record<string, unknown> = {};
      for (const which of ['qsd', 'blockemu'] as const) {
        const v2 = join(dir, `v2-${which}.qcow2`);
        const huge = join(dir, `huge-${which}.qcow2`);
        await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', v2, '64M');
        await qemuImg('create', '-q', '-f', 'qcow2', huge, '8T');
        results[which] = {
          v2: await withDaemon(which, v2, (c) => Promise.all(steps.map(([cmd, a]) => outcome(c, cmd, a)))),
          huge: await withDaemon(which, huge, (c) => Promise.all(steps.map(([cmd, a]) => outcome(c, cmd, a)))),
        };
      }
      expect(results['blockemu']).toEqual(results['qsd']);
      expect(JSON.stringify(results['qsd'])).toContain('Cannot store dirty bitmaps in qcow2 v2 files');
      expect(JSON.stringify(results['qsd'])).toContain('Too much space will be occupied by the bitmap');
    });
  });
});
