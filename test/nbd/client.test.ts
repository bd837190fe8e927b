/**
 * The client's protocol paths that QEMU's servers do not take, against a
 * scripted server: nbd/client.c's fallbacks (no GO: LIST then
 * EXPORT_NAME; no structured replies: simple replies and no block
 * status), replies out of order, hole and error chunks, error replies,
 * a protocol violation (the connection is given up for good, as
 * NBD_CLIENT_QUIT) and a connection lost under a request, which is sent
 * again on the new one within reconnect-delay.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { CMD, NBD_ERRNO, REPLY_FLAG_DONE, REPLY_TYPE } from '../../src/nbd/protocol.js';
import { openNbdNode } from '../helpers/nbd-servers.js';
import { withTempDir } from '../helpers/qemu.js';
import { FakeServer, type FakeOptions } from './fake-server.js';

async function withFake(o: FakeOptions, fn: (fake: FakeServer) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const fake = await FakeServer.start(dir, o);
    try {
      await fn(fake);
    } finally {
      await fake.stop();
    }
  });
}

const errnoOf = (p: Promise<unknown>) => p.then(
  () => 'ok',
  (e: { errno?: string }) => e.errno,
);

describe('the nbd client against a scripted server', () => {
  it('a server without GO or structured replies: LIST and EXPORT_NAME, simple replies, everything data', async () => {
    await withFake({ go: false, structured: false }, async (fake) => {
      fake.data.fill(7, 0, 4096);
      const { graph, node } = await openNbdNode(fake.path);
      expect(node.size()).toBe(1 << 20);
      expect(node.requestAlignment()).toBe(512);
      await node.write(8192, new Uint8Array(512).fill(9));
      expect(Buffer.from(await node.read(4094, 4)).equals(Buffer.from([7, 7, 0, 0]))).toBe(true);
      expect(await node.blockStatus(0, 1 << 20)).toMatchObject({ length: 1 << 20, data: true, zero: false });
      expect(fake.data[8192]).toBe(9);
      await graph.closeAll();
      expect(fake.requests.map((r) => r.type)).toEqual([CMD.WRITE, CMD.READ, CMD.FLUSH, CMD.DISC]);
    });
    await withFake({ go: false }, async (fake) => {
      await expect(openNbdNode(fake.path, { export: 'nope' })).rejects.toThrow("No export with name 'nope' available");
    });
  });

  it('replies in any order reach their requests; hole chunks read as zeroes', async () => {
    const held: Array<() => void> = [];
    await withFake(
      {
        reply: (req, sock) => {
          if (req.type !== CMD.READ) return false;
          const off = Buffer.alloc(8);
          off.writeBigUInt64BE(BigInt(req.offset));
          const answer = () => {
            // Half data, half hole.
            const half = req.length / 2;
            FakeServer.chunk(sock, req.handle, REPLY_TYPE.OFFSET_DATA, 0, Buffer.concat([off, Buffer.alloc(half, req.offset >> 12)]));
            const hole = Buffer.alloc(12);
            hole.writeBigUInt64BE(BigInt(req.offset + half), 0);
            hole.writeUInt32BE(half, 8);
            FakeServer.chunk(sock, req.handle, REPLY_TYPE.OFFSET_HOLE, REPLY_FLAG_DONE, hole);
          };
          held.push(answer);
          // The first read waits for the second; the second is answered first.
          if (held.length === 2) held.reverse().forEach((a) => a());
          return true;
        },
      },
      async (fake) => {
        const { graph, node } = await openNbdNode(fake.path);
        const [a, b] = await Promise.all([node.read(4096, 8), node.read(8192, 8)]);
        expect([...a!]).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
        expect([...b!]).toEqual([2, 2, 2, 2, 0, 0, 0, 0]);
        await graph.closeAll();
      },
    );
  });

  it("error chunks and error replies fail their request with the server's errno; the connection stays", async () => {
    await withFake(
      {
        reply: (req, sock) => {
          if (req.type !== CMD.WRITE || req.offset !== 0) return false;
          const p = Buffer.alloc(6 + 3);
          p.writeUInt32BE(NBD_ERRNO.ENOSPC, 0);
          p.writeUInt16BE(3, 4);
          p.write('full', 6);
          FakeServer.chunk(sock, req.handle, REPLY_TYPE.ERROR, REPLY_FLAG_DONE, p);
          return true;
        },
      },
      async (fake) => {
        const { graph, node } = await openNbdNode(fake.path);
        expect(await errnoOf(node.write(0, new Uint8Array(512)))).toBe('ENOSPC');
        expect(await errnoOf(node.write(512, new Uint8Array(512)))).toBe('ok');
        await graph.closeAll();
      },
    );
    await withFake(
      {
        structured: false,
        reply: (req, sock) => (req.type === CMD.WRITE_ZEROES ? (FakeServer.simple(sock, req.handle, NBD_ERRNO.EPERM), true) : false),
      },
      async (fake) => {
        const { graph, node } = await openNbdNode(fake.path);
        expect(await errnoOf(node.writeZeroes(0, 512))).toBe('EPERM');
        expect(await errnoOf(node.read(0, 512))).toBe('ok');
        await graph.closeAll();
      },
    );
  });

  it('a protocol violation fails the request and ends the connection for good, even with reconnect-delay', async () => {
    await withFake(
      {
        reply: (req, sock) => {
          if (req.type !== CMD.READ || req.offset !== 4096) return false;
          sock.write(Buffer.from('garbage!'));
          return true;
        },
      },
      async (fake) => {
        const { graph, node } = await openNbdNode(fake.path, { 'reconnect-delay': 5 });
        expect(await errnoOf(node.read(4096, 512))).toBe('EINVAL');
        expect(await errnoOf(node.read(0, 512))).toBe('EIO');
        await sleep(200);
        expect(fake.connections).toBe(1);
        await graph.closeAll();
      },
    );
  });

  it('a connection lost under a request: within reconnect-delay the request is sent again on the next connection', async () => {
    await withFake(
      {
        reply: (req, sock, fake) => {
          if (req.type !== CMD.READ || fake.connections > 1) return false;
          sock.destroy();
          return true;
        },
      },
      async (fake) => {
        fake.data.fill(3, 0, 512);
        const { graph, node } = await openNbdNode(fake.path, { 'reconnect-delay': 5 });
        expect([...(await node.read(0, 4))]).toEqual([3, 3, 3, 3]);
        expect(fake.connections).toBe(2);
        await graph.closeAll();
      },
    );
  });
});
