/**
 * Throttle nodes on a virtual clock: each request is let through at the
 * nanosecond QEMU's leaky buckets give, worked out by hand below from
 * util/throttle.c's rules (a bucket holds avg/10 units without a burst
 * rate, max × burst-length with one; the wait is the excess over the
 * rate) — not from the code under test. Groups share one state and serve
 * their members in turn.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/blockdev/clock.js';
import { BlockGraph } from '../../src/blockdev/graph.js';
import type { BlockNode } from '../../src/blockdev/node.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { applyLimits, newThrottleConfig, type ThrottleLimits } from '../../src/blockdev/throttle/config.js';

const MiB = 1 << 20;
const MS = 1_000_000;

/** Throttle nodes over null-co nodes in one group; by default time jumps to the next timer whenever requests wait on it. */
async function throttled(limits: ThrottleLimits, members = 1, clock = new VirtualClock(() => true)): Promise<{ graph: BlockGraph; clock: VirtualClock; nodes: BlockNode[] }> {
  const graph = new BlockGraph();
  graph.clock = clock;
  graph.throttleGroups.create('tg', applyLimits(newThrottleConfig(), limits));
  const nodes: BlockNode[] = [];
  for (let i = 0; i < members; i++) {
    nodes.push(await openBlockdev(graph, { driver: 'throttle', 'node-name': `t${i}`, 'throttle-group': 'tg', file: { driver: 'null-co', 'node-name': `n${i}`, size: 64 * MiB } }));
  }
  return { graph, clock, nodes };
}

/** Runs `count` requests one after another; returns the virtual time each completed at. */
async function sequential(node: BlockNode, clock: VirtualClock, count: number, op: (i: number) => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    await op(i);
    times.push(clock.now());
  }
  void node;
  return times;
}

describe('throttle node on a virtual clock', () => {
  it('iops-total=10: two requests pass at once (a bucket of 1 op, and a request may fill it), then one every 100 ms', async () => {
    const { graph, clock, nodes } = await throttled({ 'iops-total': 10 });
    const t = nodes[0]!;
    const times = await sequential(t, clock, 8, () => t.write(0, new Uint8Array(512)));
    expect(times).toEqual([0, 0, 100 * MS, 200 * MS, 300 * MS, 400 * MS, 500 * MS, 600 * MS]);
    await graph.closeAll();
  });

  it('bps-total=1 MB/s with 50 kB writes: the bucket holds 0.1 s (100 kB); past it each write waits 50 ms', async () => {
    const { graph, clock, nodes } = await throttled({ 'bps-total': 1_000_000 });
    const t = nodes[0]!;
    const times = await sequential(t, clock, 6, () => t.write(0, new Uint8Array(50_000)));
    // A write passes while the level is at most 100 kB: three do at once, leaving 150 kB — 50 kB over, leaked in 50 ms;
    // each later write adds 50 kB more.
    expect(times).toEqual([0, 0, 0, 50 * MS, 100 * MS, 150 * MS]);
    await graph.closeAll();
  });

  it('the wait is computed in doubles and truncated to nanoseconds, as QEMU does (1 MiB/s, 64 KiB writes)', async () => {
    const { graph, clock, nodes } = await throttled({ 'bps-total': MiB });
    const t = nodes[0]!;
    const times = await sequential(t, clock, 3, () => t.write(0, new Uint8Array(64 * 1024)));
    // (131072 - 104857.6) bytes at 1 MiB/s is 24999999.99… ns: int64 truncation makes it 24999999.
    expect(times).toEqual([0, 0, 24_999_999]);
    await graph.closeAll();
  });

  it('reads and writes are limited by their own buckets; the total bucket by both', async () => {
    const { graph, clock, nodes } = await throttled({ 'iops-read': 10, 'iops-write': 1 });
    const t = nodes[0]!;
    // Writes: the bucket holds 0.1 op, so the second waits for 0.9 of the first to leak; the third for 1.1 - 0.1.
    const w = await sequential(t, clock, 3, () => t.write(0, new Uint8Array(512)));
    expect(w).toEqual([0, 900 * MS, 1900 * MS]);
    // Reads have a bucket of their own (1 op): two pass at once, then one per 100 ms.
    const r = await sequential(t, clock, 3, () => t.read(0, 512));
    expect(r).toEqual([1900 * MS, 1900 * MS, 2000 * MS]);
    await graph.closeAll();
  });

  it('iops-size: a request counts as size/iops-size operations', async () => {
    const { graph, clock, nodes } = await throttled({ 'iops-total': 10, 'iops-size': 4096 });
    const t = nodes[0]!;
    // 16 KiB = 4 ops: the first passes (bucket empty), the second waits for 4 - 1 = 3 ops to leak: 300 ms.
    const times = await sequential(t, clock, 3, () => t.write(0, new Uint8Array(16384)));
    expect(times).toEqual([0, 300 * MS, 700 * MS]);
    await graph.closeAll();
  });

  it('bursts: iops-total-max=50 for 2 s — at most max per second while the big bucket fills, then the average', async () => {
    const { graph, clock, nodes } = await throttled({ 'iops-total': 10, 'iops-total-max': 50, 'iops-total-max-length': 2 });
    const t = nodes[0]!;
    const times = await sequential(t, clock, 200, () => t.write(0, new Uint8Array(512)));
    // Never faster than 50/s over any second, after the first 0.1 s of burst bucket (5 ops + the one that fills it).
    for (let i = 0; i + 56 < times.length; i++) expect(times[i + 56]! - times[i]!).toBeGreaterThanOrEqual(1000 * MS);
    // The burst ends when 100 ops are above the average: from then on, 10 per second.
    const tail = times.slice(-20);
    for (let i = 1; i < tail.length; i++) expect(tail[i]! - tail[i - 1]!).toBe(100 * MS);
    await graph.closeAll();
  });

  it('a group serves its members in turn: two nodes saturating it take turns once the limit applies', async () => {
    const { graph, clock, nodes } = await throttled({ 'iops-total': 10 }, 2);
    const order: string[] = [];
    const run = (n: BlockNode) =>
      Promise.all(
        Array.from({ length: 5 }, async () => {
          await n.write(0, new Uint8Array(512));
          order.push(`${n.nodeName}@${clock.now() / MS}`);
        }),
      );
    await Promise.all([run(nodes[0]!), run(nodes[1]!)]);
    // t0's third request armed the group's timer, so t0 holds the token first; from then on the members take turns
    // (throttle-groups.c's next_throttle_token), until t0 has nothing left; the group keeps 10/s throughout.
    expect(order).toEqual(['t0@0', 't0@0', 't0@100', 't1@200', 't0@300', 't1@400', 't0@500', 't1@600', 't1@700', 't1@800']);
    await graph.closeAll();
  });

  it('new limits (qom-set) apply to the next request', async () => {
    const { graph, clock, nodes } = await throttled({ 'iops-total': 1 });
    const t = nodes[0]!;
    // The bucket holds 0.1 op: the second write waits for 0.9 of the first to leak.
    expect(await sequential(t, clock, 2, () => t.write(0, new Uint8Array(512)))).toEqual([0, 900 * MS]);
    // 1000/s: a bucket of 100 ops, emptied by the new configuration.
    graph.throttleGroups.get('tg')!.configure(applyLimits(newThrottleConfig(), { 'iops-total': 1000 }));
    expect(await sequential(t, clock, 3, () => t.write(0, new Uint8Array(512)))).toEqual([900 * MS, 900 * MS, 900 * MS]);
    await graph.closeAll();
  });

  it('a node closed while a request waits lets it go at once (drained, as throttle_co_drain_begin)', async () => {
    // A clock that moves only when told to: the request is still waiting when the node closes.
    const { graph, clock, nodes } = await throttled({ 'iops-total': 1 }, 1, new VirtualClock());
    const t = nodes[0]!;
    await t.write(0, new Uint8Array(512));
    let doneAt: number | undefined;
    const waiting = t.write(0, new Uint8Array(512)).then(() => (doneAt = clock.now()));
    await new Promise((r) => setImmediate(r));
    expect(doneAt).toBeUndefined();
    await graph.closeAll();
    await waiting;
    expect(doneAt).toBe(0);
  });

  it('property: over a long run the rate never exceeds the limit, whatever the sizes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1000 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 20, maxLength: 60 }), async (iops, sizes) => {
        const { graph, clock, nodes } = await throttled({ 'iops-total': iops, 'bps-total': 8 * MiB });
        const t = nodes[0]!;
        let bytes = 0;
        const times = await sequential(t, clock, sizes.length, async (i) => {
          bytes += sizes[i]! * 4096;
          await t.write(0, new Uint8Array(sizes[i]! * 4096));
        });
        const secs = times.at(-1)! / 1e9;
        // A bucket's worth (avg/10) may pass before the rate applies, plus the request that fills it.
        expect(sizes.length).toBeLessThanOrEqual(iops * secs + iops / 10 + 2);
        expect(bytes).toBeLessThanOrEqual(8 * MiB * secs + 0.8 * MiB + 64 * 4096 + 1);
        await graph.closeAll();
      }),
      { numRuns: 25 },
    );
  });
});

describe('throttle limits', () => {
  it("are checked as QEMU's throttle_is_valid, in its order", () => {
    const check = (l: ThrottleLimits) => {
      try {
        applyLimits(newThrottleConfig(), l);
        return 'ok';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(check({ 'iops-total': 10, 'iops-write': 1 })).toBe('bps/iops/max total values and read/write values cannot be used at the same time');
    expect(check({ 'iops-size': 10 })).toBe('iops size requires an iops value to be set');
    expect(check({ 'bps-read': -1 })).toBe('bps/iops/max values must be within [0, 1000000000000000]');
    expect(check({ 'bps-read-max-length': 0 })).toBe('the burst length cannot be 0');
    expect(check({ 'bps-read-max-length': 2 })).toBe('burst length set without burst rate');
    expect(check({ 'bps-read': 1, 'bps-read-max': 10 ** 9, 'bps-read-max-length': 10 ** 7 })).toBe('burst length too high for this burst rate');
    expect(check({ 'bps-read-max': 10 })).toBe('bps_max/iops_max require corresponding bps/iops values');
    expect(check({ 'bps-read': 10, 'bps-read-max': 5 })).toBe('bps_max/iops_max cannot be lower than bps/iops');
    expect(check({ 'iops-read-max-length': 2n ** 32n })).toBe('iops-read-max-length value must be in the range [0, 4294967295]');
    expect(check({ 'iops-total': 1, 'iops-total-max': 2, 'iops-total-max-length': 3 })).toBe('ok');
  });
});
