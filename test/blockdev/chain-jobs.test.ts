/**
 * The graph operations stream and commit stand on, on a chain made by
 * QEMU's tools (test/helpers/chain-session.ts: base [0, 256k), mid
 * [128k, 384k) and zeroes at [512k, 576k), top [256k, 320k)): allocation
 * answers with QEMU's run lengths, and frozen links refused in QEMU's words.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAllocated, isAllocatedAbove } from '../../src/blockdev/allocation.js';
import { freezeChain, unfreezeChain } from '../../src/blockdev/freeze.js';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { replaceNode, setBacking } from '../../src/blockdev/graph-edit.js';
import { GraphTransaction } from '../../src/blockdev/graph-transaction.js';
import type { BlockNode } from '../../src/blockdev/node.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { makeChain } from '../helpers/chain-session.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

const K = 1024;

async function withChain(fn: (n: { top: BlockNode; mid: BlockNode; base: BlockNode; g: BlockGraph; dir: string }) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    await makeChain(dir);
    const g = new BlockGraph();
    const file = (name: string) => ({ driver: 'file', filename: join(dir, name) });
    const base = await openBlockdev(g, { driver: 'qcow2', 'node-name': 'base', 'read-only': true, file: file('base.qcow2') });
    const mid = await openBlockdev(g, { driver: 'qcow2', 'node-name': 'mid', 'read-only': true, backing: 'base', file: file('mid.qcow2') });
    const top = await openBlockdev(g, { driver: 'qcow2', 'node-name': 'top', backing: 'mid', file: file('top.qcow2') });
    try {
      await fn({ top, mid, base, g, dir });
    } finally {
      await g.closeAll();
    }
  });
}

describe.skipIf(!qemu.available)('allocation along a chain (bdrv_is_allocated, bdrv_is_allocated_above)', () => {
  it("a layer's own runs, whatever the layers below split them into", async () => {
    await withChain(async ({ top, mid }) => {
      expect(await isAllocated(top, 0, 512 * K)).toEqual({ allocated: false, length: 256 * K });
      expect(await isAllocated(top, 256 * K, 512 * K)).toEqual({ allocated: true, length: 64 * K });
      expect(await isAllocated(mid, 512 * K, 512 * K)).toEqual({ allocated: true, length: 64 * K });
      expect(await isAllocated(top, 1024 * K, 512 * K)).toEqual({ allocated: false, length: 0 });
    });
  });

  it('above a base: the first layer decides the run; the base counts only when included', async () => {
    await withChain(async ({ mid, base }) => {
      expect(await isAllocatedAbove(mid, base, true, 0, 256 * K)).toEqual({ allocated: true, length: 128 * K });
      expect(await isAllocatedAbove(mid, base, false, 0, 256 * K)).toEqual({ allocated: false, length: 128 * K });
      expect(await isAllocatedAbove(mid, mid, true, 384 * K, 512 * K)).toEqual({ allocated: false, length: 128 * K });
      expect(await isAllocatedAbove(mid, mid, false, 0, 512 * K)).toEqual({ allocated: false, length: 512 * K });
    });
  });

  it('a backing file shorter than its overlay reads as allocated zeroes past its end', async () => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'short.qcow2'), '256k');
      await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'short.qcow2', '-F', 'qcow2', join(dir, 'long.qcow2'), '1M');
      const g = new BlockGraph();
      const long = await openBlockdev(g, { driver: 'qcow2', 'node-name': 'long', file: { driver: 'file', filename: join(dir, 'long.qcow2') } });
      const short = long.child('backing')!;
      expect(await isAllocatedAbove(long, short, true, 512 * K, 512 * K)).toEqual({ allocated: true, length: 512 * K });
      expect(await isAllocatedAbove(long, short, true, 0, 512 * K)).toEqual({ allocated: false, length: 256 * K });
      await g.closeAll();
    });
  });
});

describe.skipIf(!qemu.available)('frozen backing chains (bdrv_freeze_backing_chain)', () => {
  it('freezes the links down to the base; nothing re-points them until they thaw', async () => {
    await withChain(async ({ top, mid, base }) => {
      freezeChain(top, base);
      expect(() => freezeChain(mid, base)).toThrow("Cannot change 'backing' link from 'mid' to 'base'");
      await expect(GraphTransaction.run((t) => setBacking(t, top, undefined))).rejects.toThrow("Cannot change frozen 'backing' link from 'top' to 'mid'");
      await expect(GraphTransaction.run((t) => replaceNode(t, mid, base))).rejects.toThrow("Cannot change 'backing' link to 'mid'");
      expect(top.child('backing')).toBe(mid);
      unfreezeChain(top, base);
      freezeChain(top, mid);
      await GraphTransaction.run((t) => setBacking(t, mid, undefined));
      expect(mid.child('backing')).toBeUndefined();
      unfreezeChain(top, mid);
    });
  });

  it('refuses a chain through a node that must stay movable (commit_top), freezing nothing', async () => {
    await withChain(async ({ top, mid, base }) => {
      mid.neverFreeze = true;
      expect(() => freezeChain(top, base)).toThrow("Cannot freeze 'backing' link to 'mid'");
      expect(top.childEdge('backing')!.frozen).toBe(false);
      mid.neverFreeze = false;
    });
  });
});
