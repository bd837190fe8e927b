/**
 * Opening nbd nodes as QEMU opens them: its refusals word for word (a
 * missing server, a missing export, a read-only export under a
 * read-write node, a bitmap the export lacks, TLS), auto-read-only, the
 * x-dirty-bitmap view of block status as qemu-img reads it, and a server
 * with a minimum and a maximum block size (qemu-storage-daemon over
 * blkdebug's align and max-transfer), which takes no request that does
 * not fit them.
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { openNbdNode, startServer } from '../helpers/nbd-servers.js';
import { qemu, qemuImg, qemuIo, run, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;

async function image(dir: string, name = 's.raw'): Promise<void> {
  await qemuImg('create', '-q', '-f', 'raw', join(dir, name), '4M');
  expect((await qemuIo('-f', 'raw', '-c', 'write -P 0x5a 0 1M', join(dir, name))).stderr).toBe('');
}

const refusal = (p: Promise<unknown>) => p.then(
  () => 'opened',
  (e: Error) => e.message,
);

describe.skipIf(!qemu.available)('opening nbd nodes', () => {
  it("refuses as QEMU words it: no server, no such export, TLS credentials that do not exist, a file descriptor", async () => {
    await withTempDir(async (dir) => {
      await image(dir);
      const graph = new BlockGraph();
      const add = (extra: Record<string, unknown>) => refusal(openBlockdev(graph, { driver: 'nbd', 'node-name': 'n', export: 'exp', ...extra }));
      expect(await add({ server: { type: 'unix', path: join(dir, 'none.sock') } })).toBe(`Failed to connect to '${join(dir, 'none.sock')}': No such file or directory`);
      expect(await add({ server: { type: 'inet', host: '127.0.0.1', port: '1' } })).toBe("Failed to connect to '127.0.0.1:1': Connection refused");
      expect(await add({ server: { type: 'fd', str: '3' } })).toBe('only QEMU supports file descriptor passing');
      const srv = await startServer('qemu-nbd', dir, 's.raw');
      try {
        expect(await add({ server: { type: 'unix', path: srv.path }, export: 'nope' })).toBe('Requested export not available');
        expect(await add({ server: { type: 'unix', path: srv.path }, 'tls-creds': 'tls0' })).toBe("No TLS credentials with id 'tls0'");
        expect(graph.get('n')).toBeUndefined();
      } finally {
        await graph.closeAll();
        await srv.stop();
      }
    });
  });

  it('a read-only export: refused for a read-write node without auto-read-only, a read-only node with it, writes refused with EPERM', async () => {
    await withTempDir(async (dir) => {
      await image(dir);
      const srv = await startServer('qemu-nbd', dir, 's.raw', { readOnly: true });
      try {
        expect(await refusal(openNbdNode(srv.path))).toBe('Could not open image: Permission denied');
        const { graph, node } = await openNbdNode(srv.path, { 'auto-read-only': true });
        expect(node.readOnly).toBe(true);
        await expect(node.write(0, new Uint8Array(512))).rejects.toMatchObject({ errno: 'EPERM' });
        expect(Buffer.from(await node.read(0, 16)).equals(Buffer.alloc(16, 0x5a))).toBe(true);
        await graph.closeAll();
        const ro = await openNbdNode(srv.path, { 'read-only': true });
        expect(ro.node.readOnly).toBe(true);
        await ro.graph.closeAll();
      } finally {
        await srv.stop();
      }
    });
  });

  it.skipIf(!qemu.storageDaemon)('x-dirty-bitmap: dirty areas are holes, as qemu-img map reads them through QEMU; a bitmap the export lacks is refused', async () => {
    await withTempDir(async (dir) => {
      const q = join(dir, 's.qcow2');
      await qemuImg('create', '-q', '-f', 'qcow2', q, '4M');
      await qemuIo('-f', 'qcow2', '-c', 'write -P 0x5a 0 1M', q);
      expect((await qemuImg('bitmap', '--add', q, 'b0')).stderr).toBe('');
      await qemuIo('-f', 'qcow2', '-c', 'write -P 0x22 1M 64k', '-c', 'write -P 0x23 3M 4k', q);
      const srv = await startServer('qsd', dir, 's.qcow2', { format: 'qcow2', bitmap: 'b0' });
      try {
        expect(await refusal(openNbdNode(srv.path, { 'x-dirty-bitmap': 'qemu:dirty-bitmap:nope' }))).toBe('Could not open image: Invalid argument');
        const { graph, node } = await openNbdNode(srv.path, { 'x-dirty-bitmap': 'qemu:dirty-bitmap:b0' });
        const ours = (await node.blockStatusRuns(0, node.size())).map(({ offset, length, data, zero, allocated }) => ({ start: offset, length, data, zero, present: allocated }));
        const opts = `driver=nbd,server.type=unix,server.path=${srv.path},export=exp,x-dirty-bitmap=qemu:dirty-bitmap:b0`;
        const m = await run('qemu-img', ['map', '--output=json', '--image-opts', opts]);
        const theirs = (JSON.parse(m.stdout) as Array<Record<string, unknown>>).map(({ start, length, data, zero, present }) => ({ start, length, data, zero, present }));
        const merge = (l: typeof ours) => l.reduce<typeof ours>((o, e) => {
          const last = o[o.length - 1];
          if (last && last.data === e.data && last.zero === e.zero && last.present === e.present) last.length += e.length;
          else o.push({ ...e });
          return o;
        }, []);
        expect(merge(ours)).toEqual(theirs);
        expect(ours.filter((e) => !e.data).map((e) => [e.start, e.length])).toEqual([[MiB, 64 * 1024], [3 * MiB, 64 * 1024]]);
        await graph.closeAll();
      } finally {
        await srv.stop();
      }
    });
  });

  it.skipIf(!qemu.storageDaemon)('a server with a 4 KiB minimum and a 64 KiB maximum block: unaligned requests read-modify-write, large ones split', async () => {
    await withTempDir(async (dir) => {
      await image(dir);
      await copyFile(join(dir, 's.raw'), join(dir, 'e.raw'));
      const srv = await startServer('qsd', dir, 's.raw', { blkdebug: { align: 4096, 'max-transfer': 65536 } });
      const { graph, node } = await openNbdNode(srv.path);
      try {
        expect(node.requestAlignment()).toBe(4096);
        await Promise.all([node.write(5000, new Uint8Array(100).fill(0x61)), node.write(5050, new Uint8Array(10_000).fill(0x62)), node.write(2 * MiB + 1, new Uint8Array(300_000).fill(0x63))]);
        await node.writeZeroes(100, 9000);
        await node.writeZeroes(MiB - 3, 200_000);
        expect(Buffer.from(await node.read(3, 7)).equals(Buffer.alloc(7, 0x5a))).toBe(true);
        expect((await node.read(0, 4 * MiB)).length).toBe(4 * MiB);
        await node.flush();
      } finally {
        await graph.closeAll();
        await srv.stop();
      }
      // Every request the server got fits its limits (QEMU's server would take unaligned ones and only trace them).
      const sent = srv.requests().filter((r) => r.len > 0);
      expect(sent.length).toBeGreaterThan(64);
      expect(sent.filter((r) => r.from % 4096 !== 0 || r.len % 4096 !== 0 || r.len > 65536)).toEqual([]);
      // The two overlapping writes ran one after the other (their blocks overlap), in the order given.
      expect(
        (await qemuIo('-f', 'raw', '-c', 'write -P 0x61 5000 100', '-c', 'write -P 0x62 5050 10000', '-c', `write -P 0x63 ${2 * MiB + 1} 300000`, '-c', 'write -z 100 9000', '-c', `write -z ${MiB - 3} 200000`, join(dir, 'e.raw'))).stderr,
      ).toBe('');
      expect((await qemuImg('compare', '-f', 'raw', '-F', 'raw', join(dir, 's.raw'), join(dir, 'e.raw'))).stdout).toBe('Images are identical.\n');
    });
  });
});
