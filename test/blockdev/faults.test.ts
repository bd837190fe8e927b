import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/blockdev/clock.js';
import type { FaultFired, FaultSpec } from '../../src/blockdev/faults/fault.js';
import { BlockGraph } from '../../src/blockdev/graph.js';
import type { BlockNode } from '../../src/blockdev/node.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { BlockError } from '../../src/image/errors.js';
import { withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;

/** A raw node over a 1 MiB file of zeroes, its graph, and the faults fired on it. */
async function withNode(run: (node: BlockNode, graph: BlockGraph, fired: FaultFired[], path: string) => Promise<void>, clock?: VirtualClock): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, 'd.raw');
    await writeFile(path, new Uint8Array(MiB));
    const graph = new BlockGraph();
    if (clock) graph.clock = clock;
    const fired: FaultFired[] = [];
    graph.faults.onFired = (f) => fired.push(f);
    const node = await openBlockdev(graph, { driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: path } });
    try {
      await run(node, graph, fired, path);
    } finally {
      graph.faults.clear();
      await graph.closeAll();
    }
  });
}

const block = (byte: number, n = 4096) => new Uint8Array(n).fill(byte);
/** The errno a request failed with, or 'ok'. */
const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof BlockError ? `${e.errno}: ${e.message}` : `not a BlockError: ${String(e)}`),
  );

describe('faults on a node (blockemu fault-add, below QMP)', () => {
  it('error at the nth write: only that one fails, once; reads are not counted; the fault is then spent', async () => {
    await withNode(async (node, graph, fired) => {
      const id = graph.faults.add(node, { type: 'error', iotype: 'write', nth: 3, errno: 'ENOSPC' });
      expect(id).toBe('fault0');
      const got: string[] = [];
      for (let i = 0; i < 5; i++) {
        await node.read(0, 512);
        got.push(await outcome(node.write(i * 4096, block(i + 1))));
      }
      expect(got).toEqual(['ok', 'ok', 'ENOSPC: No space left on device', 'ok', 'ok']);
      expect(fired).toEqual([{ id: 'fault0', type: 'error', node: 'd0', iotype: 'write', offset: 8192, length: 4096, errno: 'ENOSPC', hits: 1 }]);
      // A spent fault counts no more requests.
      expect(graph.faults.list()).toEqual([{ id: 'fault0', type: 'error', node: 'd0', matched: 3, hits: 1, spent: true }]);
      // The failed write reached nothing; the others landed.
      expect((await node.read(8192, 4096))[0]).toBe(0);
      expect((await node.read(12288, 4096))[0]).toBe(4);
    });
  });

  it('error over an offset range: every request touching it fails, others pass; count limits it', async () => {
    await withNode(async (node, graph) => {
      graph.faults.add(node, { type: 'error', iotype: 'any', offset: 65536, length: 512, errno: 'EIO' }, 'range');
      expect(await outcome(node.read(65536 + 511, 1))).toBe('EIO: Input/output error');
      expect(await outcome(node.read(0, 65536))).toBe('ok');
      expect(await outcome(node.write(65536 - 4096, block(1, 8192)))).toBe('EIO: Input/output error');
      expect(await outcome(node.writeZeroes(65536 + 512, 4096))).toBe('ok');
      graph.faults.add(node, { type: 'error', iotype: 'flush', count: 2, errno: 'EPERM' }, 'flush');
      expect([await outcome(node.flush()), await outcome(node.flush()), await outcome(node.flush())]).toEqual([
        'EPERM: Operation not permitted',
        'EPERM: Operation not permitted',
        'ok',
      ]);
      graph.faults.remove('range');
      expect(await outcome(node.read(65536, 512))).toBe('ok');
      expect(() => graph.faults.remove('range')).toThrow("Fault 'range' not found");
      expect(() => graph.faults.add(node, { type: 'stall', iotype: 'read' }, 'flush')).toThrow("Fault 'flush' already exists");
    });
  });

  it('enospc-after: writes pass up to the threshold, the one crossing it and every later one fail with ENOSPC', async () => {
    await withNode(async (node, graph, fired) => {
      graph.faults.add(node, { type: 'enospc-after', bytes: 10000 });
      const got = [];
      for (let i = 0; i < 4; i++) got.push(await outcome(node.write(i * 4096, block(9))));
      got.push(await outcome(node.writeZeroes(0, 512)));
      got.push(await outcome(node.read(0, 4096)));
      expect(got).toEqual(['ok', 'ok', 'ENOSPC: No space left on device', 'ENOSPC: No space left on device', 'ENOSPC: No space left on device', 'ok']);
      expect(fired.map((f) => [f.offset, f.errno, f.hits])).toEqual([
        [8192, 'ENOSPC', 1],
        [12288, 'ENOSPC', 2],
        [0, 'ENOSPC', 3],
      ]);
    });
  });

  it('torn-write: the first sectors land, the rest do not, and the write fails', async () => {
    await withNode(async (node, graph, _fired, path) => {
      graph.faults.add(node, { type: 'torn-write', bytes: 1500, nth: 2 });
      expect(await outcome(node.write(0, block(1)))).toBe('ok');
      expect(await outcome(node.write(4096, block(2)))).toBe('EIO: Input/output error');
      await node.flush();
      const file = await readFile(path);
      expect([file[4096], file[4096 + 1023], file[4096 + 1024], file[8191]]).toEqual([2, 2, 0, 0]);
    });
  });

  it('stall: matching requests wait until released; others go by; release lets them all go and disarms it', async () => {
    await withNode(async (node, graph) => {
      graph.faults.add(node, { type: 'stall', iotype: 'write' }, 's');
      const done: string[] = [];
      const w1 = node.write(0, block(1)).then(() => done.push('w1'));
      const w2 = node.write(4096, block(2)).then(() => done.push('w2'));
      await node.read(0, 512).then(() => done.push('r'));
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      expect(done).toEqual(['r']);
      expect(graph.faults.list()).toEqual([{ id: 's', type: 'stall', node: 'd0', matched: 2, hits: 2, spent: false, waiting: 2 }]);
      expect(() => graph.faults.release('nosuch')).toThrow("Fault 'nosuch' not found");
      graph.faults.release('s');
      await Promise.all([w1, w2]);
      await node.write(8192, block(3));
      expect(done).toEqual(['r', 'w1', 'w2']);
      expect(graph.faults.list()[0]).toMatchObject({ hits: 2, spent: true, waiting: 0 });
    });
  });

  it('closing a node lets its stalled requests go and drops its faults (a close flushes: it must not wait on a stall)', async () => {
    await withNode(async (node, graph) => {
      graph.faults.add(node, { type: 'stall', iotype: 'any' }, 'hold');
      const w = outcome(node.write(0, block(1)));
      await new Promise((r) => setImmediate(r));
      await graph.closeAll();
      expect(await w).toBe('ok');
      expect(graph.faults.list()).toEqual([]);
      expect(node.faults).toBeUndefined();
    });
  });

  it('latency runs on the graph clock: a read waits for the virtual clock to move', async () => {
    const clock = new VirtualClock();
    await withNode(
      async (node, graph, fired) => {
        graph.faults.add(node, { type: 'latency', iotype: 'read', ms: 250 });
        let done = false;
        const r = node.read(0, 512).then(() => (done = true));
        await clock.advance(249_999_999);
        expect(done).toBe(false);
        await clock.advance(1);
        await r;
        expect(done).toBe(true);
        expect(fired[0]).toMatchObject({ type: 'latency', iotype: 'read', offset: 0, length: 512 });
      },
      clock,
    );
  });

  it('crash: before a request, after it, after N bytes written — the exit comes at that point, with the status', async () => {
    await withNode(async (node, graph, fired, path) => {
      const exits: number[] = [];
      // The boundary to the process: instead of exiting, record (the spawned-daemon test exits for real).
      graph.faults.exit = (status) => void exits.push(status);
      const id = graph.faults.add(node, { type: 'crash', point: 'after-bytes-written', iotype: 'write', bytes: 3 * 4096, status: 3 });
      await node.write(0, block(1));
      await node.write(4096, block(1));
      expect(exits).toEqual([]);
      await node.write(8192, block(1));
      expect(exits).toEqual([3]);
      graph.faults.remove(id);
      graph.faults.add(node, { type: 'crash', point: 'before-request', iotype: 'write', nth: 1 } satisfies FaultSpec);
      await node.write(65536, block(7));
      expect(exits).toEqual([3, 137]);
      expect((await readFile(path))[65536]).toBe(7); // the stub returned, so the write went on
      expect(fired.map((f) => f.type)).toEqual(['crash', 'crash']);
    });
  });

  it('refuses descriptions that cannot fire as meant', async () => {
    await withNode(async (node, graph) => {
      expect(() => graph.faults.add(node, { type: 'error', iotype: 'read', nth: 0, errno: 'EIO' })).toThrow("Parameter 'nth' expects a value of at least 1");
      expect(() => graph.faults.add(node, { type: 'error', iotype: 'read', length: 5, errno: 'EIO' })).toThrow("Parameter 'length' needs 'offset'");
      expect(() => graph.faults.add(node, { type: 'crash', point: 'after-bytes-written', iotype: 'write' })).toThrow("Parameter 'bytes' is missing");
      expect(graph.faults.list()).toEqual([]);
      expect(node.faults).toBeUndefined();
    });
  });
});
