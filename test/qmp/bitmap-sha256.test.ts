/**
 * x-debug-block-dirty-bitmap-sha256, which QEMU's iotests compare bitmaps
 * with (176): the same digest as qemu-storage-daemon's for the same bits.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemu, qemuIo, withTempDir } from '../helpers/qemu.js';
import { RawQmp } from '../helpers/raw-qmp.js';

describe.skipIf(!qemu.storageDaemon)('x-debug-block-dirty-bitmap-sha256', () => {
  it("hashes a bitmap's bits as qemu-storage-daemon does: empty, a few clusters dirty, a size not a multiple of 64 granules", async () => {
    await withTempDir(async (dir) => {
      const out: string[][] = [];
      for (const which of ['qsd', 'blockemu'] as const) {
        const sock = join(dir, `${which}-nbd.sock`);
        const s = await RawQmp.start(which, dir, [
          '--blockdev', 'driver=null-co,node-name=n0,size=3072000',
          '--nbd-server', `addr.type=unix,addr.path=${sock}`,
          '--export', 'type=nbd,id=e0,node-name=n0,writable=on',
        ]);
        try {
          for (const [name, g] of [['b0', 65536], ['b1', 131072], ['empty', 65536]] as const) {
            expect(await s.command(`{"execute": "block-dirty-bitmap-add", "arguments": {"node": "n0", "name": "${name}", "granularity": ${g}}}`)).toBe('{"return": {}}');
          }
          await s.command('{"execute": "block-dirty-bitmap-disable", "arguments": {"node": "n0", "name": "empty"}}');
          // Writes through the export dirty the enabled bitmaps, the last cluster included.
          const w = await qemuIo('-f', 'raw', '-c', 'write 0 64k', '-c', 'write 1M 200k', '-c', 'write 2900k 100k', `nbd+unix:///n0?socket=${sock}`);
          expect(w.code, w.stderr).toBe(0);
          const ask = (name: string) => s.command(`{"execute": "x-debug-block-dirty-bitmap-sha256", "arguments": {"node": "n0", "name": "${name}"}}`);
          out.push([await ask('b0'), await ask('b1'), await ask('empty'), await ask('nosuch')]);
        } finally {
          await s.quit();
        }
      }
      expect(out[1]).toEqual(out[0]);
      expect(out[1]![0]).toMatch(/^\{"return": \{"sha256": "[0-9a-f]{64}"\}\}$/);
      expect(out[1]![0]).not.toBe(out[1]![2]);
    });
  });
});
