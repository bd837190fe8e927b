/**
 * BlockCopy's background tasks at the node level: a task that finds only
 * zeroes takes the zeroes after it (zeroRuns), and whatever the task sizes,
 * every cluster is copied exactly once, the target reads as the source, and
 * progress adds up to the image.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockCopy } from '../../src/blockdev/block-copy.js';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { createImage, openImage } from '../../src/image/open.js';
import { withTempDir } from '../helpers/qemu.js';

const CS = 64 * 1024;
const MiB = 1 << 20;
const SIZE = 64 * MiB + 3 * CS; // the last task ends at the image's end, not at a MiB
const image = (name: string, path: string) => ({ driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: path } });

/** Runs a background pass as the backup job does: `depth` tasks in flight, each started at the cursor. */
async function pass(copier: BlockCopy, depth: number, zeroRuns: boolean): Promise<Array<[number, number]>> {
  const tasks: Array<[number, number]> = [];
  const inFlight = new Set<Promise<void>>();
  for (let cursor = 0; ; ) {
    const t = copier.startNext(cursor, { zeroRuns });
    if (!t) break;
    cursor = t.end;
    const p: Promise<void> = t.done.then(() => void tasks.push([t.first, t.end])).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= depth) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  await copier.drain();
  return tasks;
}

describe('BlockCopy background tasks', () => {
  it('a task of zeroes takes the zeroes after it; the target is the source and every cluster is copied once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 0, max: SIZE / CS - 1 }), { maxLength: 12 }),
        fc.integer({ min: 1, max: 16 }),
        fc.boolean(),
        async (dataClusters, depth, zeroRuns) =>
          withTempDir(async (dir) => {
            const src = join(dir, 'src.qcow2');
            const tgt = join(dir, 'tgt.qcow2');
            await createImage(src, { format: 'qcow2', size: SIZE });
            await createImage(tgt, { format: 'qcow2', size: SIZE });
            const img = await openImage(src);
            for (const c of dataClusters) await img.write(c * CS, new Uint8Array(CS).fill((c % 250) + 1));
            await img.close();
            const graph = new BlockGraph();
            try {
              const s = await openBlockdev(graph, image('src', src));
              const t = await openBlockdev(graph, image('tgt', tgt));
              let progress = 0;
              const copier = new BlockCopy(s, t, CS, { onProgress: (n) => (progress += n) });
              copier.bitmap.setAll();
              const tasks = await pass(copier, depth, zeroRuns);
              // Each cluster in exactly one task.
              const seen = new Uint8Array(copier.bitmap.chunks);
              for (const [first, end] of tasks) for (let c = first; c < end; c++) seen[c]!++;
              expect(seen.every((n) => n === 1)).toBe(true);
              expect(progress).toBe(copier.bitmap.chunks * CS);
              expect(copier.bitmap.count).toBe(0);
              // Without zero runs a task is at most 1 MiB; with them an image that is mostly holes needs far fewer.
              const largest = Math.max(...tasks.map(([a, b]) => b - a));
              if (!zeroRuns) expect(largest).toBeLessThanOrEqual(MiB / CS);
              else if (depth === 1) expect(tasks.length).toBeLessThanOrEqual(4 * dataClusters.length + 8);
              const a = new Uint8Array(SIZE);
              const b = new Uint8Array(SIZE);
              await s.readInto(a, 0);
              await t.readInto(b, 0);
              expect(Buffer.compare(a, b)).toBe(0);
              // Data stays data and holes stay holes (zeroes written as zeroes, not as data).
              const st = await t.blockStatusRuns(0, SIZE, { wantZero: false });
              const dataBytes = st.filter((r) => !r.zero).reduce((n, r) => n + r.length, 0);
              expect(dataBytes).toBe(dataClusters.length * CS);
            } finally {
              await graph.closeAll();
            }
          }),
      ),
      { numRuns: 12 },
    );
  });
});
