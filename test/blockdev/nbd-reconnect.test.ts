/**
 * A lost connection, as block/nbd.c handles it: with reconnect-delay 0
 * requests fail with EIO at once while the server is away, and succeed
 * again once the client has connected anew in the background; with a
 * delay, requests wait for the new connection (and are sent again on
 * it), or fail with EIO once the delay has passed. open-timeout retries
 * the first connection. The server is qemu-nbd, stopped and started again
 * on the same socket.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { openNbdNode, startQemuNbd } from '../helpers/nbd-servers.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

async function image(dir: string): Promise<void> {
  await qemuImg('create', '-q', '-f', 'raw', join(dir, 's.raw'), '4M');
  expect((await qemuIo('-f', 'raw', '-c', 'write -P 0x5a 0 1M', join(dir, 's.raw'))).stderr).toBe('');
}

const outcome = (p: Promise<Uint8Array>) => p.then(
  (d) => `read ${d[0]}`,
  (e: { errno?: string }) => e.errno ?? String(e),
);

describe.skipIf(!qemu.available)('nbd reconnect', () => {
  it('reconnect-delay 0: EIO while the server is away, then requests succeed on a connection made in the background', async () => {
    await withTempDir(async (dir) => {
      await image(dir);
      let srv = await startQemuNbd(dir, 's.raw');
      const { graph, node } = await openNbdNode(srv.path);
      try {
        expect(await outcome(node.read(0, 512))).toBe('read 90');
        await srv.stop();
        expect(await outcome(node.read(0, 512))).toBe('EIO');
        await expect(node.write(0, new Uint8Array(512))).rejects.toMatchObject({ errno: 'EIO' });
        srv = await startQemuNbd(dir, 's.raw');
        let last = '';
        for (const deadline = Date.now() + 10_000; last !== 'read 90' && Date.now() < deadline; await sleep(100)) last = await outcome(node.read(0, 512));
        expect(last).toBe('read 90');
      } finally {
        await graph.closeAll();
        await srv.stop();
      }
    });
  });

  it('reconnect-delay 5: a request made while the server is away waits and completes on the new connection', async () => {
    await withTempDir(async (dir) => {
      await image(dir);
      let srv = await startQemuNbd(dir, 's.raw');
      const { graph, node } = await openNbdNode(srv.path, { 'reconnect-delay': 5 });
      try {
        await srv.stop();
        const pending = outcome(node.read(0, 512));
        await sleep(300);
        srv = await startQemuNbd(dir, 's.raw');
        expect(await pending).toBe('read 90');
      } finally {
        await graph.closeAll();
        await srv.stop();
      }
    });
  });

  it('reconnect-delay 1: with the server gone for good, waiting requests fail with EIO once the delay has passed', async () => {
    await withTempDir(async (dir) => {
      await image(dir);
      const srv = await startQemuNbd(dir, 's.raw');
      const { graph, node } = await openNbdNode(srv.path, { 'reconnect-delay': 1 });
      await srv.stop();
      const t0 = Date.now();
      expect(await outcome(node.read(0, 512))).toBe('EIO');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
      expect(await outcome(node.read(0, 512))).toBe('EIO');
      await graph.closeAll();
    });
  });

  it('open-timeout: the first connection is tried again until the server is there; without a server the last error stays', async () => {
    await withTempDir(async (dir) => {
      await image(dir);
      const path = join(dir, 'nbd-qemu-nbd.sock');
      const late = sleep(400).then(() => startQemuNbd(dir, 's.raw'));
      const { graph, node } = await openNbdNode(path, { 'open-timeout': 5 });
      expect(node.size()).toBe(4 << 20);
      await graph.closeAll();
      await (await late).stop();
      const t0 = Date.now();
      await expect(openNbdNode(join(dir, 'none.sock'), { 'open-timeout': 1 })).rejects.toThrow(`Failed to connect to '${join(dir, 'none.sock')}': No such file or directory`);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    });
  });
});
