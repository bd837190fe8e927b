/**
 * libvirt's -blockdev layout: a file node with auto-read-only added on its
 * own, then the qcow2 node over it. The file node is read-only until the
 * qcow2 node takes write on it, and a qcow2 image with persistent bitmaps
 * writes (marks them in use) while it opens — so the write permission must
 * be in force by then, as in QEMU (bdrv_open_child finishes its own
 * transaction). Also the same options inline, and the same after a failed
 * open (the file node must be read-only again).
 */
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { compareSessions, file, type Step } from '../helpers/qmp-session.js';
import { qemu, qemuImg } from '../helpers/qemu.js';

async function imageWithBitmap(dir: string): Promise<void> {
  const img = join(dir, 'a.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', img, '4M');
  await qemuImg('bitmap', '--add', img, 'b0');
}

type NodeInfo = { 'node-name': string; drv: string; ro: boolean; 'dirty-bitmaps'?: unknown; image: { 'format-specific'?: { data?: { bitmaps?: unknown } } } };
/** Each node's name, driver, read-only state and bitmaps (sizes and allocation follow where each program puts the bitmap tables). */
const queryBitmaps: Step = {
  look: async (c) =>
    ((await c.execute('query-named-block-nodes', { flat: true })) as NodeInfo[]).map((n) => [n['node-name'], n.drv, n.ro, n['dirty-bitmaps'] ?? null, n.image['format-specific']?.data?.bitmaps ?? null]),
};

describe.skipIf(!qemu.available || !qemu.storageDaemon)('auto-read-only file nodes under qcow2 with persistent bitmaps', () => {
  it('a separate file node (libvirt), inline options, and a failed open in between', async () => {
    await compareSessions(imageWithBitmap, [
      ['blockdev-add', { ...file('a.qcow2', 'storage'), 'auto-read-only': true, discard: 'unmap' }],
      // A bad option fails the qcow2 open after the file link was made: the file node is read-only again.
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'bad', file: 'storage', backing: 'nope' }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'format', file: 'storage', 'read-only': false }],
      queryBitmaps,
      ['block-dirty-bitmap-add', { node: 'format', name: 'b1', persistent: true }],
      ['blockdev-del', { 'node-name': 'format' }],
      ['blockdev-del', { 'node-name': 'storage' }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'inline', file: { ...file('a.qcow2'), 'auto-read-only': true } }],
      queryBitmaps,
    ]);
  }, 60_000);

  it('a read-only qcow2 with persistent bitmaps reopened read-write (an active commit base, iotest 260): its bitmaps become writable', async () => {
    await compareSessions(imageWithBitmap, [
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'format', 'read-only': true, file: file('a.qcow2') }],
      queryBitmaps,
      ['blockdev-reopen', { options: [{ driver: 'qcow2', 'node-name': 'format', 'read-only': false, file: file('a.qcow2') }] }],
      queryBitmaps,
      ['block-dirty-bitmap-add', { node: 'format', name: 'b1', persistent: true }],
      ['block-dirty-bitmap-clear', { node: 'format', name: 'b0' }],
      queryBitmaps,
    ]);
  }, 60_000);
});
