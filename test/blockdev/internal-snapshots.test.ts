/**
 * Reverting a node that serves others to an internal snapshot (loadvm):
 * QEMU drains every node first (load_snapshot), so a write that comes
 * while the revert runs lands after it, on the reverted image. Here the
 * revert holds the image's whole range lock.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createInternalSnapshot, gotoInternalSnapshot } from '../../src/blockdev/internal-snapshots.js';
import { Qcow2Node } from '../../src/blockdev/drivers/qcow2.js';
import { internalDaemon, startDaemon } from '../../src/embed.js';
import { createImage } from '../../src/image/open.js';
import { withTempDir } from '../helpers/qemu.js';

const K = 1024;

describe('gotoInternalSnapshot', () => {
  it('holds back writes that come while it runs: they land on the reverted image, none is lost', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.qcow2');
      await createImage(path, { format: 'qcow2', size: 4 << 20 });
      const d = await startDaemon({ blockdevs: [{ driver: 'qcow2', 'node-name': 'n', file: { driver: 'file', filename: path } }] });
      try {
        const node = internalDaemon(d).graph.get('n') as Qcow2Node;
        const fill = (v: number, n = 64 * K) => new Uint8Array(n).fill(v);
        await node.write(0, fill(1));
        await createInternalSnapshot(node, { name: 's', dateSec: 0, dateNsec: 0, vmClockNsec: 0n, icount: -1n });
        await node.write(0, fill(2));
        // The revert starts; writes are issued before it ends, to the cluster the snapshot holds and to one it does not.
        const revert = gotoInternalSnapshot(node, 's');
        const writes = [node.write(0, fill(3, 4 * K)), node.write(128 * K, fill(4, 4 * K))];
        await Promise.all([revert, ...writes]);
        const at = async (off: number) => Array.from(await node.read(off, 8 * K));
        expect(await at(0)).toEqual([...fill(3, 4 * K), ...fill(1, 4 * K)]);
        expect(await at(128 * K)).toEqual([...fill(4, 4 * K), ...fill(0, 4 * K)]);
      } finally {
        await d.close();
      }
    });
  });
});
