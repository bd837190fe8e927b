import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';

/** Named BlockBackends (blockemu system's -drive) share the node-name namespace and stand for their root where a device is named. */
describe('MonitorBackends', () => {
  const withGraph = async (fn: (g: BlockGraph) => Promise<void>) => {
    const g = new BlockGraph();
    try {
      await fn(g);
    } finally {
      for (const b of [...g.backends.list()]) await g.backends.remove(b);
      await g.closeAll();
    }
  };

  it("refuses QEMU's bad names: ill-formed, twice, or a node's", async () => {
    await withGraph(async (g) => {
      await openBlockdev(g, { driver: 'null-co', 'node-name': 'n0' });
      g.backends.add('drive0');
      expect(() => g.backends.add('1x')).toThrow('Invalid device name');
      expect(() => g.backends.add('drive0')).toThrow("Device with id 'drive0' already exists");
      expect(() => g.backends.add('n0')).toThrow("Device name 'n0' conflicts with an existing node name");
      await expect(openBlockdev(g, { driver: 'null-co', 'node-name': 'drive0' })).rejects.toThrow('node-name=drive0 is conflicting with a device id');
    });
  });

  it('resolves a BlockBackend name to its root node, says when it has no medium, and names jobs after it', async () => {
    await withGraph(async (g) => {
      const node = await openBlockdev(g, { driver: 'null-co', 'node-name': 'n0' });
      const full = g.backends.add('drive0');
      await full.blk.insert(node);
      g.backends.add('empty');
      expect(g.find('drive0')).toBe(node);
      expect(g.find('n0')).toBe(node);
      expect(() => g.find('empty')).toThrow("Device 'empty' has no medium");
      expect(() => g.find('nope')).toThrow("Cannot find device='nope' nor node-name='nope'");
      expect(g.lookup('drive0', undefined)).toBe(node);
      expect(() => g.lookup(undefined, 'drive0')).toThrow("Cannot find device='' nor node-name='drive0'");
      expect(g.backends.deviceName(node)).toBe('drive0');
      // An anonymous BlockBackend (a device's on a node) names nothing.
      const other = await openBlockdev(g, { driver: 'null-co', 'node-name': 'n1' });
      await g.backends.add('').blk.insert(other);
      expect(g.backends.deviceName(other)).toBe('');
      expect(g.backends.list().map((b) => b.name)).toEqual(['drive0', 'empty', '']);
    });
  });

  it('in a graph without BlockBackends (the storage daemon) lookups are by node name only, as before', async () => {
    await withGraph(async (g) => {
      await openBlockdev(g, { driver: 'null-co', 'node-name': 'n0' });
      expect(g.find('n0').nodeName).toBe('n0');
      expect(() => g.find('x')).toThrow("Cannot find device='x' nor node-name='x'");
    });
  });
});
