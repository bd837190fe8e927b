import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addBitmap, clearBitmap, mergeBitmaps, removeBitmap, setBitmapEnabled } from '../../src/blockdev/bitmap-ops.js';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';

const MiB = 1 << 20;

async function graph(): Promise<BlockGraph> {
  const g = new BlockGraph();
  await openBlockdev(g, { driver: 'null-co', 'node-name': 'n', size: 4 * MiB } as never);
  await openBlockdev(g, { driver: 'null-co', 'node-name': 'm', size: 2 * MiB } as never);
  return g;
}

/** Dirty bytes a bitmap of granularity g should count after writes at the given ranges: whole chunks (hbitmap_count). */
function modelCount(g: number, ranges: Array<[number, number]>): number {
  const chunks = new Set<number>();
  for (const [o, l] of ranges) if (l > 0) for (let c = Math.floor(o / g); c <= Math.floor((o + l - 1) / g); c++) chunks.add(c);
  return chunks.size * g;
}

describe('dirty bitmaps', () => {
  it('are marked by completed writes, zero writes and discards, and only while enabled', async () => {
    const g = await graph();
    const n = g.find('n');
    const { bitmap } = await addBitmap(g, { node: 'n', name: 'b' });
    expect(bitmap.granularity).toBe(65536);
    await n.write(1, new Uint8Array(10));
    expect(bitmap.count).toBe(65536);
    await n.writeZeroes(65536 * 3, 65537);
    expect(bitmap.count).toBe(65536 * 3);
    setBitmapEnabled(g, 'n', 'b', false);
    await n.write(65536 * 10, new Uint8Array(10));
    expect(bitmap.count).toBe(65536 * 3);
    expect(bitmap.recording).toBe(false);
  });

  it('count agrees with a model of chunks for random writes and granularities', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 9, max: 20 }),
        fc.array(fc.tuple(fc.nat({ max: 4 * MiB - 1 }), fc.integer({ min: 1, max: 200000 })), { maxLength: 20 }),
        async (shift, writes) => {
          const g = await graph();
          const n = g.find('n');
          const { bitmap } = await addBitmap(g, { node: 'n', name: 'b', granularity: 1 << shift });
          const ranges: Array<[number, number]> = [];
          for (const [o, l0] of writes) {
            const l = Math.min(l0, 4 * MiB - o);
            await n.writeZeroes(o, l);
            ranges.push([o, l]);
          }
          expect(bitmap.count).toBe(modelCount(1 << shift, ranges));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('clear, merge, remove and enable/disable can be undone', async () => {
    const g = await graph();
    const n = g.find('n');
    const a = (await addBitmap(g, { node: 'n', name: 'a' })).bitmap;
    const b = (await addBitmap(g, { node: 'n', name: 'b', granularity: 512, disabled: true })).bitmap;
    await n.write(0, new Uint8Array(512));
    setBitmapEnabled(g, 'n', 'b', true);
    await n.write(MiB, new Uint8Array(512));
    expect([a.count, b.count]).toEqual([131072, 512]);
    const undoClear = clearBitmap(g, 'n', 'a');
    expect(a.count).toBe(0);
    undoClear();
    expect(a.count).toBe(131072);
    // a coarser target rounds the source's ranges outwards
    const undoMerge = mergeBitmaps(g, 'n', 'b', ['a']);
    expect(b.count).toBe(131072);
    undoMerge();
    expect(b.count).toBe(512);
    const undoRemove = await removeBitmap(g, 'n', 'a');
    expect(n.dirtyBitmaps.all().map((x) => x.name)).toEqual(['b']);
    undoRemove();
    expect(n.dirtyBitmaps.all().map((x) => x.name)).toEqual(['b', 'a']);
    const undoDisable = setBitmapEnabled(g, 'n', 'a', false);
    undoDisable();
    expect(a.disabled).toBe(false);
  });

  it('refuse as QEMU does', async () => {
    const g = await graph();
    await addBitmap(g, { node: 'n', name: 'a' });
    await expect(addBitmap(g, { node: 'n', name: 'a' })).rejects.toThrow('Bitmap already exists: a');
    await expect(addBitmap(g, { node: 'n', name: '' })).rejects.toThrow('Bitmap name cannot be empty');
    await expect(addBitmap(g, { node: 'zz', name: 'q' })).rejects.toThrow("Cannot find device='zz' nor node-name='zz'");
    await expect(addBitmap(g, { node: 'n', name: 'q', granularity: 1000 })).rejects.toThrow('Granularity must be power of 2 and at least 512');
    await expect(addBitmap(g, { node: 'n', name: 'x'.repeat(1024) })).rejects.toThrow(`Bitmap name too long: ${'x'.repeat(1024)}`);
    await addBitmap(g, { node: 'n', name: 'y'.repeat(1023) });
    await expect(addBitmap(g, { node: 'n', name: 'p', persistent: true })).rejects.toThrow("Can't store persistent bitmaps to n: Operation not supported");
    await addBitmap(g, { node: 'm', name: 'a' });
    expect(() => mergeBitmaps(g, 'n', 'a', [{ node: 'm', name: 'a' }])).toThrow(
      "Bitmaps are of different sizes (destination size is 4194304, source size is 2097152) and can't be merged",
    );
    expect(() => mergeBitmaps(g, 'n', 'a', ['nope'])).toThrow("Dirty bitmap 'nope' not found");
    await expect(removeBitmap(g, 'zz', 'a')).rejects.toThrow("Node 'zz' not found");
    const { bitmap } = await addBitmap(g, { node: 'n', name: 'busy' });
    bitmap.busy = true;
    await expect(removeBitmap(g, 'n', 'busy')).rejects.toThrow("Bitmap 'busy' is currently in use by another operation and cannot be used");
    for (const op of [() => clearBitmap(g, 'n', 'busy'), () => setBitmapEnabled(g, 'n', 'busy', false)]) {
      expect(op).toThrow("Bitmap 'busy' is currently in use by another operation and cannot be used");
    }
  });

  it('a successor records while the bitmap is frozen; abdicate and reclaim end it as backup does', async () => {
    const g = await graph();
    const n = g.find('n');
    const { bitmap } = await addBitmap(g, { node: 'n', name: 'b' });
    await n.write(0, new Uint8Array(1));
    const succ = bitmap.createSuccessor();
    expect([bitmap.busy, bitmap.recording, n.dirtyBitmaps.all().length]).toEqual([true, true, 2]);
    expect(() => bitmap.createSuccessor()).toThrow("Bitmap 'b' is currently in use by another operation and cannot be used");
    await n.write(MiB, new Uint8Array(1));
    expect([bitmap.count, succ.count]).toEqual([65536, 65536]);
    const back = bitmap.reclaim();
    expect([back.count, back.busy, back.disabled, n.dirtyBitmaps.all().length]).toEqual([131072, false, false, 1]);
    bitmap.createSuccessor();
    await n.write(2 * MiB, new Uint8Array(1));
    const heir = bitmap.abdicate();
    expect([heir.name, heir.count, heir.busy, n.dirtyBitmaps.all().length]).toEqual(['b', 65536, false, 1]);
  });
});
