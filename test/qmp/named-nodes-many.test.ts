/**
 * query-named-block-nodes over many nodes, byte for byte against
 * qemu-storage-daemon on the same command line: the reply gathers every
 * node's info at once (each waits on an fstat) and writes it with cached
 * member orders, and neither may change what is written or in which order.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';
import { RawQmp } from '../helpers/raw-qmp.js';

const IMAGES = 24;

describe.skipIf(!qemu.storageDaemon)('query-named-block-nodes with many nodes', () => {
  it('answers as qemu-storage-daemon does, flat and not', async () => {
    await withTempDir(async (dir) => {
      const args: string[] = [];
      for (let i = 0; i < IMAGES; i++) {
        const img = join(dir, `d${i}.qcow2`);
        // Sizes and cluster sizes differ per image, so any two nodes' entries tell apart.
        const r = await qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=${512 << i % 8}`, img, `${i + 1}M`);
        expect(r.code).toBe(0);
        args.push('--blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': `q${i}`, file: { driver: 'file', 'node-name': `f${i}`, filename: img } }));
        args.push('--blockdev', `null-co,node-name=n${i},size=${(i + 1) << 20}`);
      }
      const replies: Record<string, string[]> = {};
      for (const which of ['qsd', 'blockemu'] as const) {
        const s = await RawQmp.start(which, dir, args);
        try {
          replies[which] = [
            await s.command('{"execute": "query-named-block-nodes", "arguments": {"flat": true}}'),
            await s.command('{"execute": "query-named-block-nodes"}'),
          ];
        } finally {
          await s.quit();
        }
      }
      expect(replies.qsd![0]).toContain('"node-name": "n0"');
      expect(replies.blockemu).toEqual(replies.qsd);
    });
  }, 60_000);
});
