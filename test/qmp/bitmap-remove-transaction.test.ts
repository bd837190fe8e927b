/**
 * block-dirty-bitmap-remove of a persistent bitmap inside a transaction:
 * the bitmap leaves the image in prepare and nothing stores it again
 * before the commit drops it — not even a snapshot in the same
 * transaction, whose commit makes the old top read-only and so stores its
 * persistent bitmaps (iotest 254). A rolled-back removal keeps the bitmap,
 * stored again when the image closes. Played on qemu-storage-daemon and
 * blockemu; the images are read with qemu-img afterwards.
 */
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { compareSessions, file, type Step } from '../helpers/qmp-session.js';
import { qemu, qemuImg, run } from '../helpers/qemu.js';

async function imageWithBitmaps(dir: string): Promise<void> {
  const img = join(dir, 'a.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', img, '4M');
  for (const b of ['b0', 'b1', 'b2']) await qemuImg('bitmap', '--add', img, b);
}

type NodeInfo = { 'node-name': string; 'dirty-bitmaps'?: unknown; image: { 'format-specific'?: { data?: { bitmaps?: unknown } } } };
const bitmapsOfNodes: Step = {
  look: async (c) => ((await c.execute('query-named-block-nodes', { flat: true })) as NodeInfo[]).map((n) => [n['node-name'], n['dirty-bitmaps'] ?? null, n.image['format-specific']?.data?.bitmaps ?? null]),
};
const bitmapsInImage = async (dir: string) => {
  const r = await run('qemu-img', ['info', '-U', '--output=json', join(dir, 'a.qcow2')]);
  return (JSON.parse(r.stdout) as { 'format-specific'?: { data?: { bitmaps?: unknown } } })['format-specific']?.data?.bitmaps ?? null;
};

describe.skipIf(!qemu.available || !qemu.storageDaemon)('removing a persistent bitmap in a transaction', () => {
  it('with a snapshot of its node in the same transaction, and rolled back', async () => {
    await compareSessions(
      imageWithBitmaps,
      [
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'base', file: file('a.qcow2') }],
        // A user of base, whom the snapshot moves onto the overlay (without one, qemu-storage-daemon drops the overlay).
        ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
        ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'base', writable: true }],
        // Rolled back: b1 stays, in memory and (once the node closes) in the image.
        ['transaction', { actions: [{ type: 'block-dirty-bitmap-remove', data: { node: 'base', name: 'b1' } }, { type: 'abort', data: {} }] }],
        [
          'transaction',
          {
            actions: [
              { type: 'blockdev-snapshot-sync', data: { 'node-name': 'base', 'snapshot-file': '${DIR}/top.qcow2', 'snapshot-node-name': 'snap' } },
              { type: 'block-dirty-bitmap-remove', data: { node: 'base', name: 'b2' } },
            ],
          },
        ],
        bitmapsOfNodes,
      ],
      (l) => l,
      bitmapsInImage,
    );
  }, 60_000);
});
