import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { withTempDir } from '../helpers/qemu.js';

const KiB = 1024;

describe('blockStatusRuns', () => {
  it('covers the range with the extents block status gives one by one, for a driver without its own (raw on file; qcow2 has its own, checked in the qcow2 model test)', async () => {
    await withTempDir(async (dir) => {
      const rawPath = join(dir, 'd.raw');
      const fh = await open(rawPath, 'w');
      await fh.truncate(1024 * KiB);
      // Data at 64-128 KiB and 320-336 KiB, holes elsewhere.
      await fh.write(new Uint8Array(64 * KiB).fill(1), 0, 64 * KiB, 64 * KiB);
      await fh.write(new Uint8Array(16 * KiB).fill(2), 0, 16 * KiB, 320 * KiB);
      await fh.close();
      const g = new BlockGraph();
      const raw = await openBlockdev(g, { driver: 'raw', 'node-name': 'r', file: { driver: 'file', filename: rawPath } });
      for (const [start, length] of [
        [0, 1024 * KiB],
        [100 * KiB, 300 * KiB],
        [330 * KiB, 6 * KiB],
      ] as const) {
        const runs = await raw.blockStatusRuns(start, length);
        const walk = [];
        for (let pos = start; pos < start + length; ) {
          const e = await raw.blockStatus(pos, start + length - pos);
          walk.push(e);
          pos += e.length;
        }
        expect(runs).toEqual(walk);
        expect(runs[0]!.offset).toBe(start);
        expect(runs.reduce((n, e) => n + e.length, 0)).toBe(length);
        const back = await raw.read(start, length);
        for (const e of runs) expect(back.subarray(e.offset - start, e.offset - start + e.length).every((b) => b === 0)).toBe(e.zero);
      }
      await g.closeAll();
    });
  });
});
