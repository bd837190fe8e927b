/** The null-co driver: a read fills the caller's buffer with zeroes, whatever it held, within the node's size. */
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../../src/blockdev/graph.js';
import { openBlockdev } from '../../../src/blockdev/open.js';

describe('null-co', () => {
  it('reads zeroes into a buffer that held data, and refuses a read past its size', async () => {
    const graph = new BlockGraph();
    const node = await openBlockdev(graph, { driver: 'null-co', 'node-name': 'n', size: 1 << 20 });
    const buf = new Uint8Array(64 << 10).fill(0xa5);
    await node.readInto(buf, 4096);
    expect(buf.every((b) => b === 0)).toBe(true);
    expect(await node.read(0, 512)).toEqual(new Uint8Array(512));
    await expect(node.readInto(new Uint8Array(4096), (1 << 20) - 512)).rejects.toThrow();
    await graph.closeAll();
  });
});
