/**
 * QEMU's serialisation of overlapping requests (block/io.c), as iotest 077
 * drives it through blkdebug breakpoints: a serialising request waits for
 * every overlapping one, a plain one only for serialising ones, and no
 * request waits for one that is itself waiting.
 */
import { describe, expect, it } from 'vitest';
import { TrackedRequests } from '../../src/blockdev/tracked-requests.js';

const K = 4096;
/** Lets every pending continuation run. */
const settle = () => new Promise((r) => setImmediate(r));

describe('TrackedRequests', () => {
  it('a serialising request waits for every overlapping request; a plain one only for serialising ones', async () => {
    const t = new TrackedRequests();
    const plain = t.begin(0, 512);
    const rmw = t.begin(1024, 512);
    let rmwGoes = false;
    void t.makeSerialising(rmw, K).then(() => (rmwGoes = true));
    await settle();
    expect(rmwGoes).toBe(false); // the plain write to the same block is in flight
    const later = t.begin(2048, 512);
    let laterGoes = false;
    void t.waitSerialising(later).then(() => (laterGoes = true));
    await settle();
    // rmw is waiting itself, so later does not wait for it (it would wait for us).
    expect(laterGoes).toBe(true);
    t.end(plain);
    await settle();
    expect(rmwGoes).toBe(false); // now later is in flight in its block, and not waiting
    t.end(later);
    await settle();
    expect(rmwGoes).toBe(true);
    const elsewhere = t.begin(2 * K, 512);
    let elsewhereGoes = false;
    void t.waitSerialising(elsewhere).then(() => (elsewhereGoes = true));
    await settle();
    expect(elsewhereGoes).toBe(true); // no overlap with the serialising block
  });

  it("077's overlapping case: the third request goes on past the second, which waits for the first; the second then waits for the third", async () => {
    const t = new TrackedRequests();
    const order: string[] = [];
    const a = t.begin(0xa000, K); // write 0xa000+0x200, held after its tail read
    await t.makeSerialising(a, K);
    const b = t.begin(0xa000, 0x2000); // write 0xa800+0x1000: both blocks
    void t.makeSerialising(b, K).then(() => order.push('b'));
    await settle();
    const c = t.begin(0xb000, K); // write 0xbe00+0x200
    void t.makeSerialising(c, K).then(() => order.push('c'));
    await settle();
    expect(order).toEqual(['c']);
    t.end(a);
    await settle();
    expect(order).toEqual(['c']); // b wakes, and now waits for c
    t.end(c);
    await settle();
    expect(order).toEqual(['c', 'b']);
  });

  it('requests woken together go on in the order they waited, each then waiting for the first to go (077: chained dependencies)', async () => {
    const t = new TrackedRequests();
    const first = t.begin(0x5000, K);
    await t.makeSerialising(first, K);
    const order: number[] = [];
    const reqs = [1, 2, 3].map((n) => {
      const r = t.begin(0x5000 + n * 0x200, 0x200);
      void t.makeSerialising(r, K).then(() => order.push(n));
      return r;
    });
    await settle();
    expect(order).toEqual([]);
    t.end(first);
    await settle();
    expect(order).toEqual([1]);
    t.end(reqs[0]!);
    await settle();
    expect(order).toEqual([1, 2]);
    t.end(reqs[1]!);
    await settle();
    expect(order).toEqual([1, 2, 3]);
  });
});
