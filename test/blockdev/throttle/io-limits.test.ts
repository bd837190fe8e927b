/**
 * I/O limits on BlockBackends, on a virtual clock: requests through a
 * BlockBackend wait for its group the way a throttle node's do (the times
 * below are worked out by hand from util/throttle.c's rules: with
 * iops-total=10 the bucket holds one op, so two pass at once, then one per
 * 100 ms), BlockBackends in one group share it and take turns, and leaving
 * the group lets waiting requests go.
 */
import { describe, expect, it } from 'vitest';
import { BlockBackend } from '../../../src/blockdev/block-backend.js';
import { VirtualClock } from '../../../src/blockdev/clock.js';
import { BlockGraph } from '../../../src/blockdev/graph.js';
import { openBlockdev } from '../../../src/blockdev/open.js';
import { applyLimits, newThrottleConfig, type ThrottleLimits } from '../../../src/blockdev/throttle/config.js';
import { disableIoLimits, enableIoLimits, ioLimitsOf, setIoLimits, updateIoLimitsGroup } from '../../../src/blockdev/throttle/io-limits.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_WRITE } from '../../../src/image/perm.js';

const MS = 1_000_000;

async function backends(count: number, clock: VirtualClock): Promise<{ graph: BlockGraph; blks: BlockBackend[] }> {
  const graph = new BlockGraph();
  graph.clock = clock;
  const blks: BlockBackend[] = [];
  for (let i = 0; i < count; i++) {
    const node = await openBlockdev(graph, { driver: 'null-co', 'node-name': `n${i}`, size: 1 << 20 });
    const blk = new BlockBackend({ perm: PERM_CONSISTENT_READ | PERM_WRITE, shared: PERM_ALL }, `d${i}`);
    await blk.insert(node);
    blks.push(blk);
  }
  return { graph, blks };
}

const limited = (blk: BlockBackend, graph: BlockGraph, group: string, limits: ThrottleLimits) => {
  enableIoLimits(blk, graph.throttleGroups, group);
  setIoLimits(blk, applyLimits(newThrottleConfig(), limits));
};

describe('I/O limits on a BlockBackend', () => {
  it('iops-total=10: reads and writes through the BlockBackend wait their turn; without limits nothing waits', async () => {
    const clock = new VirtualClock(() => true);
    const { graph, blks } = await backends(2, clock);
    const [a, free] = blks as [BlockBackend, BlockBackend];
    limited(a, graph, 'g', { 'iops-total': 10 });
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      await a.write(0, new Uint8Array(512));
      times.push(clock.now());
    }
    for (let i = 0; i < 2; i++) {
      await a.read(0, 512);
      times.push(clock.now());
    }
    await a.writeZeroes(0, 512);
    times.push(clock.now());
    expect(times).toEqual([0, 0, 100 * MS, 200 * MS, 300 * MS, 400 * MS]);
    // Discards and flushes pass at once, as in QEMU; another BlockBackend is not limited at all.
    await a.discard(0, 512);
    await a.flush();
    for (let i = 0; i < 5; i++) await free.write(0, new Uint8Array(512));
    expect(clock.now()).toBe(400 * MS);
    await graph.closeAll();
  });

  it('two BlockBackends in one group share its limits and are served in turn', async () => {
    const clock = new VirtualClock(() => true);
    const { graph, blks } = await backends(2, clock);
    const [a, b] = blks as [BlockBackend, BlockBackend];
    limited(a, graph, 'shared', { 'iops-total': 10 });
    enableIoLimits(b, graph.throttleGroups, 'shared');
    expect(ioLimitsOf(b)?.cfg.buckets[3]!.avg).toBe(10);
    const done: string[] = [];
    const go = (blk: BlockBackend, tag: string) => blk.write(0, new Uint8Array(512)).then(() => done.push(`${tag}@${clock.now() / MS}`));
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < 4; i++) all.push(go(a, 'a'), go(b, 'b'));
    await Promise.all(all);
    // a's backlog does not starve b: after the two that fit in the bucket, one request per 100 ms, alternately.
    expect(done).toEqual(['a@0', 'b@0', 'a@100', 'b@200', 'a@300', 'b@400', 'a@500', 'b@600']);
    await graph.closeAll();
  });

  it('leaving the group (all limits 0) lets the waiting requests go at once; the group a BlockBackend made goes with its last member', async () => {
    const clock = new VirtualClock();
    const { graph, blks } = await backends(1, clock);
    const a = blks[0]!;
    limited(a, graph, 'g', { 'bps-total': 1000 });
    const writes = Promise.all([0, 1, 2, 3].map(() => a.write(0, new Uint8Array(1000))));
    await new Promise((r) => setImmediate(r));
    expect(clock.pendingTimers).toBe(1);
    disableIoLimits(a);
    await writes;
    expect(clock.now()).toBe(0);
    expect(ioLimitsOf(a)).toBeUndefined();
    expect(graph.throttleGroups.get('g')).toBeUndefined();
    // The name is free again for a throttle-group object.
    expect(() => graph.throttleGroups.create('g', newThrottleConfig())).not.toThrow();
    await graph.closeAll();
  });

  it("moving to another group takes that group's limits and leaves the old one", async () => {
    const clock = new VirtualClock(() => true);
    const { graph, blks } = await backends(2, clock);
    const [a, b] = blks as [BlockBackend, BlockBackend];
    limited(a, graph, 'slow', { 'iops-total': 1 });
    limited(b, graph, 'fast', { 'iops-total': 20 });
    updateIoLimitsGroup(a, graph.throttleGroups, 'fast');
    expect(ioLimitsOf(a)?.group).toBe('fast');
    expect(graph.throttleGroups.get('slow')).toBeUndefined();
    for (let i = 0; i < 5; i++) await a.write(0, new Uint8Array(512));
    // At 20 iops the bucket holds 2 ops: three pass at once, the fourth and fifth wait 50 ms each (at 1 iops the second would wait 900 ms).
    expect(clock.now()).toBe(100 * MS);
    await graph.closeAll();
  });

  it("shutdown's drain lets a drive's queued requests run at once, and later ones pass unlimited", async () => {
    const clock = new VirtualClock();
    const graph = new BlockGraph();
    graph.clock = clock;
    const node = await openBlockdev(graph, { driver: 'null-co', 'node-name': 'n', size: 1 << 20 });
    const b = graph.backends.add('d0');
    await b.blk.insert(node);
    limited(b.blk, graph, 'g', { 'iops-write': 1 });
    const writes = Promise.all([0, 1, 2].map(() => b.blk.write(0, new Uint8Array(512))));
    await new Promise((r) => setImmediate(r));
    expect(clock.pendingTimers).toBe(1);
    graph.drainAllForShutdown();
    await writes;
    await b.blk.write(0, new Uint8Array(512));
    expect(clock.now()).toBe(0);
    await graph.closeAll();
  });

  it('a BlockBackend without a medium fails its requests with ENOMEDIUM', async () => {
    const blk = new BlockBackend({ perm: 0, shared: PERM_ALL });
    await expect(blk.read(0, 512)).rejects.toMatchObject({ errno: 'ENOMEDIUM' });
  });
});
