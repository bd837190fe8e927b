/**
 * copy-before-write and snapshot-access nodes at the node level.
 *
 * - The point in time as a property: batches of guest writes and zero
 *   writes through the cbw node (several at once), snapshot reads, block
 *   status and discards through the snapshot-access node at the same
 *   time; every snapshot read equals the source as it was when the cbw
 *   node was added, fails with EACCES where the snapshot no longer holds
 *   the data (discarded, or outside a bitmap), and the source ends as the
 *   guest wrote it. Raw and qcow2 layouts, with and without a bitmap.
 * - A snapshot read from the source holds a guest write over the same
 *   cluster back until it is done (frozen reads).
 * - cbw-timeout on a hand-driven virtual clock with a throttled target.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockCopy } from '../../src/blockdev/block-copy.js';
import { VirtualClock } from '../../src/blockdev/clock.js';
import { CbwState } from '../../src/blockdev/drivers/cbw-state.js';
import { PassThroughFilter } from '../../src/blockdev/drivers/filter-node.js';
import { BlockGraph } from '../../src/blockdev/graph.js';
import type { BlockNode } from '../../src/blockdev/node.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { applyLimits, newThrottleConfig } from '../../src/blockdev/throttle/config.js';
import { createImage, openImage } from '../../src/image/open.js';
import { withTempDir } from '../helpers/qemu.js';

const KiB = 1024;
const CS = 64 * KiB;
const SIZE = 1 << 20;
const CLUSTERS = SIZE / CS;
const RUNS = Number(process.env['FLEECE_RUNS'] ?? 15);

/** What a failed snapshot request carries: the errno. */
const errnoOf = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: unknown) => (e as { errno?: string }).errno ?? String(e),
  );

/** The source's original bytes (a half-allocated qcow2 holds data in even clusters only) and its image. */
async function makeSource(dir: string, run: number, format: 'raw' | 'qcow2'): Promise<{ original: Uint8Array; path: string }> {
  const original = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) original[i] = format === 'qcow2' && (i >> 16) % 2 === 1 ? 0 : (i * 13 + (i >> 10) + run) & 0xff;
  const path = join(dir, `src${run}.${format}`);
  if (format === 'raw') {
    await writeFile(path, original);
  } else {
    await createImage(path, { format: 'qcow2', size: SIZE });
    const img = await openImage(path);
    for (let c = 0; c < CLUSTERS; c += 2) await img.write(c * CS, original.subarray(c * CS, (c + 1) * CS));
    await img.close();
  }
  return { original, path };
}

async function makeTarget(dir: string, run: number, format: 'raw' | 'qcow2'): Promise<string> {
  const path = join(dir, `tgt${run}.${format}`);
  if (format === 'raw') await writeFile(path, new Uint8Array(SIZE));
  else await createImage(path, { format: 'qcow2', size: SIZE });
  return path;
}

const image = (name: string, format: string, path: string) => ({ driver: format, 'node-name': name, file: { driver: 'file', filename: path } });

type GuestOp = { kind: 'write' | 'zeroes'; offset: number; length: number; byte: number };
type Batch = { drops: Array<[number, number]>; guest: GuestOp[]; reads: Array<[number, number]>; status: number[] };

const batch: fc.Arbitrary<Batch> = fc.record({
  drops: fc.array(fc.tuple(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 1, max: 3 * CS })), { maxLength: 1 }),
  guest: fc.array(
    fc.record({
      kind: fc.constantFrom('write' as const, 'zeroes' as const),
      offset: fc.integer({ min: 0, max: SIZE - 1 }),
      length: fc.oneof(fc.integer({ min: 1, max: 4 * KiB }), fc.integer({ min: 1, max: 200 * KiB })),
      byte: fc.integer({ min: 1, max: 255 }),
    }),
    { maxLength: 3 },
  ),
  reads: fc.array(fc.tuple(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 1, max: 3 * CS })), { maxLength: 3 }),
  status: fc.array(fc.integer({ min: 0, max: SIZE - 1 }), { maxLength: 2 }),
});

const LAYOUTS = [
  { name: 'raw source and target', src: 'raw', tgt: 'raw', bitmap: false },
  { name: 'half-allocated qcow2 source, qcow2 target', src: 'qcow2', tgt: 'qcow2', bitmap: false },
  { name: 'raw, copying only a bitmap\'s clusters', src: 'raw', tgt: 'raw', bitmap: true },
] as const;

describe('copy-before-write with snapshot-access: the point in time', () => {
  for (const layout of LAYOUTS) {
    it(`${layout.name}: snapshot reads give the source as it was, or EACCES where the snapshot holds nothing`, async () => {
      let run = 0;
      await withTempDir(async (dir) => {
        await fc.assert(
          fc.asyncProperty(fc.array(batch, { minLength: 1, maxLength: 6 }), fc.array(fc.integer({ min: 0, max: CLUSTERS - 1 }), { maxLength: 6 }), async (batches, marked) => {
            run++;
            const { original, path } = await makeSource(dir, run, layout.src);
            const tgt = await makeTarget(dir, run, layout.tgt);
            const graph = new BlockGraph();
            const src = await openBlockdev(graph, image('src', layout.src, path));
            await openBlockdev(graph, image('tgt', layout.tgt, tgt));
            // The bitmap names what the snapshot is to hold; it is taken at open, so marking it later changes nothing.
            const held = new Set<number>(layout.bitmap ? marked : Array.from({ length: CLUSTERS }, (_, c) => c));
            if (layout.bitmap) {
              const bm = src.dirtyBitmaps.create('b0', CS);
              for (const c of marked) bm.mark(c * CS, 1);
            }
            const cbw = await openBlockdev(graph, {
              driver: 'copy-before-write',
              'node-name': 'cbw',
              file: 'src',
              target: 'tgt',
              ...(layout.bitmap ? { bitmap: { node: 'src', name: 'b0' } } : {}),
            });
            const acc = await openBlockdev(graph, { driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw', discard: 'unmap' });
            if (layout.bitmap) src.dirtyBitmaps.find('b0')!.mark(0, SIZE);
            const current = original.slice();
            try {
              for (const b of batches) {
                // Discarded clusters: those wholly inside the range (the last one also when the range reaches the end).
                for (const [o, l] of b.drops) {
                  await acc.discard(o, l);
                  const end = o + l >= SIZE ? CLUSTERS : Math.floor((o + l) / CS);
                  for (let c = Math.ceil(o / CS); c < end; c++) held.delete(c);
                }
                // Guest writes of one batch never overlap (their order would decide what the source holds).
                const guest: GuestOp[] = [];
                for (const g of b.guest) {
                  const length = Math.min(g.length, SIZE - g.offset);
                  if (guest.every((x) => x.offset + x.length <= g.offset || g.offset + length <= x.offset)) guest.push({ ...g, length });
                }
                const reads = b.reads.map(([o, l]) => [o, Math.min(l, SIZE - o)] as const);
                const results = await Promise.all([
                  ...guest.map((g) =>
                    g.kind === 'write' ? cbw.write(g.offset, new Uint8Array(g.length).fill(g.byte)).then(() => 'ok') : cbw.writeZeroes(g.offset, g.length).then(() => 'ok'),
                  ),
                  ...reads.map(([o, l]) => acc.read(o, l).then((d) => d, (e: unknown) => (e as { errno?: string }).errno ?? String(e))),
                  ...b.status.map((o) => errnoOf(acc.blockStatus(o, SIZE - o))),
                ]);
                for (const g of guest) current.fill(g.kind === 'write' ? g.byte : 0, g.offset, g.offset + g.length);
                expect(results.slice(0, guest.length)).toEqual(guest.map(() => 'ok'));
                reads.forEach(([o, l], i) => {
                  const got = results[guest.length + i];
                  const whole = Array.from({ length: Math.floor((o + l - 1) / CS) - Math.floor(o / CS) + 1 }, (_, k) => Math.floor(o / CS) + k).every((c) => held.has(c));
                  if (whole) expect({ o, l, same: Buffer.compare(Buffer.from(got as Uint8Array), Buffer.from(original.subarray(o, o + l))) === 0 }).toEqual({ o, l, same: true });
                  else expect({ o, l, got }).toEqual({ o, l, got: 'EACCES' });
                });
                b.status.forEach((o, i) => {
                  // Block status asks about the whole rest of the disk: refused if any of it is gone.
                  const all = Array.from({ length: CLUSTERS - Math.floor(o / CS) }, (_, k) => Math.floor(o / CS) + k).every((c) => held.has(c));
                  expect({ o, got: results[guest.length + reads.length + i] }).toEqual({ o, got: all ? 'ok' : 'EACCES' });
                });
              }
              // Every cluster the snapshot still holds reads as it was; the source as the guest left it.
              for (const c of held) expect(Buffer.compare(Buffer.from(await acc.read(c * CS, CS)), Buffer.from(original.subarray(c * CS, (c + 1) * CS)))).toBe(0);
              expect(Buffer.compare(Buffer.from(await cbw.read(0, SIZE)), Buffer.from(current))).toBe(0);
            } finally {
              await graph.closeAll();
            }
            if (layout.src === 'raw') expect(Buffer.compare(await readFile(path), Buffer.from(current))).toBe(0);
          }),
          { numRuns: RUNS },
        );
      });
    }, 120_000);
  }
});

/**
 * A filter whose reads of one chosen cluster wait until released: a slow
 * disk under the source, so that a snapshot read of that cluster is still
 * under way while a guest write over it copies and would write.
 */
class HeldReads extends PassThroughFilter {
  readonly driver = 'held-reads';
  held: { cluster: number; release: () => void; gate: Promise<void> } | undefined;

  constructor(private readonly below: BlockNode) {
    super('held', false, []);
  }
  protected get filtered(): BlockNode {
    return this.below;
  }
  hold(cluster: number): () => void {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    this.held = { cluster, release, gate };
    return release;
  }
  protected override async doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    const h = this.held;
    if (h && Math.floor(offset / CS) <= h.cluster && h.cluster < Math.ceil((offset + buf.length) / CS)) {
      this.held = undefined;
      await h.gate;
    }
    return super.doReadInto(buf, offset);
  }
}

describe('copy-before-write: frozen reads and timeouts', () => {
  it('a guest write over a cluster a snapshot read is still reading from the source waits for that read (which gets the old data)', async () => {
    await withTempDir(async (dir) => {
      const { original, path } = await makeSource(dir, 0, 'raw');
      const graph = new BlockGraph();
      const file = await openBlockdev(graph, image('file', 'raw', path));
      const tgtNode = await openBlockdev(graph, image('tgt', 'raw', await makeTarget(dir, 0, 'raw')));
      const slow = new HeldReads(file);
      graph.add(slow, false);
      const cbw = await openBlockdev(graph, { driver: 'copy-before-write', 'node-name': 'cbw', file: 'held', target: 'tgt' });
      const acc = await openBlockdev(graph, { driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw' });
      const order: string[] = [];
      // Cluster 3's snapshot read goes to the source (nothing copied yet) and is held there.
      const release = slow.hold(3);
      const buf = new Uint8Array(CS);
      const read = acc.readInto(buf, 3 * CS).then(() => order.push('read'));
      await new Promise((r) => setImmediate(r));
      // The guest write copies cluster 3 (its own read is not held), then must wait for the snapshot read.
      const write = cbw.write(3 * CS + 100, new Uint8Array(1000).fill(0xee)).then(() => order.push('write'));
      // The copy is done (the cbw's bitmap of what was copied, listed second on the node, has the cluster)…
      const copied = cbw.dirtyBitmaps.all()[1]!.bits;
      for (let i = 0; i < 200 && !copied.get(3); i++) await new Promise((r) => setTimeout(r, 5));
      expect(copied.get(3)).toBe(true);
      // …yet the write waits, as long as the read is held.
      await new Promise((r) => setTimeout(r, 50));
      expect(order).toEqual([]);
      release();
      await Promise.all([read, write]);
      expect(order).toEqual(['read', 'write']);
      expect(Buffer.compare(Buffer.from(buf), Buffer.from(original.subarray(3 * CS, 4 * CS)))).toBe(0);
      // The copy is in the target, and later snapshot reads come from there.
      expect(Buffer.compare(Buffer.from(await tgtNode.read(3 * CS, CS)), Buffer.from(original.subarray(3 * CS, 4 * CS)))).toBe(0);
      expect(Buffer.compare(Buffer.from(await acc.read(3 * CS, CS)), Buffer.from(original.subarray(3 * CS, 4 * CS)))).toBe(0);
      await graph.closeAll();
    });
  });

  for (const onCbwError of ['break-guest-write', 'break-snapshot'] as const) {
    it(`cbw-timeout on a virtual clock, ${onCbwError}: a copy held by a throttled target fails at the timeout, and goes on to finish`, async () => {
      await withTempDir(async (dir) => {
        const { original, path } = await makeSource(dir, 1, 'raw');
        const clock = new VirtualClock();
        const graph = new BlockGraph();
        graph.clock = clock;
        // 64 KiB/s: one 64 KiB copy passes the empty bucket, the next waits about a second.
        graph.throttleGroups.create('tg', applyLimits(newThrottleConfig(), { 'bps-write': 64 * KiB }));
        const src = await openBlockdev(graph, image('src', 'raw', path));
        const tgt = await openBlockdev(graph, { driver: 'throttle', 'node-name': 'tgt', 'throttle-group': 'tg', file: image('tgt-raw', 'raw', await makeTarget(dir, 1, 'raw')) });
        const state = new CbwState(new BlockCopy(src, tgt, CS, { separateExtents: true }), { onCbwError, timeoutNs: 500_000_000, clock });
        await state.copyBeforeWrite(0, 1);
        expect(state.done.get(0)).toBe(true);
        let outcome = 'pending';
        const second = state.copyBeforeWrite(CS, 1).then(
          () => (outcome = 'ok'),
          (e: unknown) => (outcome = (e as { errno?: string }).errno ?? String(e)),
        );
        for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
        expect(outcome).toBe('pending');
        await clock.advance(499_000_000);
        expect(outcome).toBe('pending');
        await clock.advance(1_000_000);
        await second;
        expect(outcome).toBe(onCbwError === 'break-guest-write' ? 'ETIMEDOUT' : 'ok');
        expect(state.done.get(1)).toBe(false);
        expect(await errnoOf(state.readInto(new Uint8Array(CS), 0))).toBe(onCbwError === 'break-guest-write' ? 'ok' : 'EACCES');
        // The copy goes on in the background and lands once the bucket lets it through.
        expect(state.bcs.bitmap.get(1)).toBe(false);
        await clock.advance(2_000_000_000);
        await state.close();
        expect(src.dirtyBitmaps.all()).toEqual([]);
        expect(Buffer.compare(Buffer.from(await tgt.read(CS, CS)), Buffer.from(original.subarray(CS, 2 * CS)))).toBe(0);
        await graph.closeAll();
      });
    });
  }
});
