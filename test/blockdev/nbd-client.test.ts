/**
 * The nbd client driver against three servers — blockemu's own export,
 * qemu-storage-daemon's and qemu-nbd — doing what a guest and the jobs
 * above a node do: reads, writes, zero writes (with and without unmap),
 * discards, flushes, block status, many requests at once and requests
 * larger than the server takes in one. The same operations are done by
 * qemu-io on a copy of the image; `qemu-img compare` must find the two
 * equal, and our block status must be what QEMU's own client (qemu-img
 * map over the same export) reads.
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BlockNode } from '../../src/blockdev/node.js';
import { CMD } from '../../src/nbd/protocol.js';
import { type NbdServer, openNbdNode, type ServerKind, startServer } from '../helpers/nbd-servers.js';
import { qemu, qemuImg, qemuIo, run, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;
const SIZE = 48 * MiB;

/** s.raw (served) and e.raw (the expectation) with the same data: patterns, a hole, a zeroed run. */
async function makeImages(dir: string): Promise<void> {
  await qemuImg('create', '-q', '-f', 'raw', join(dir, 's.raw'), String(SIZE));
  const r = await qemuIo('-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0x11 2M 64k', '-c', 'write -P 0x22 40M 3M', join(dir, 's.raw'));
  expect(r.stderr).toBe('');
  await copyFile(join(dir, 's.raw'), join(dir, 'e.raw'));
}

/** qemu-io commands on the expectation image. */
async function expectIo(dir: string, ...cmds: string[]): Promise<void> {
  const r = await qemuIo('-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), join(dir, 'e.raw'));
  expect(r.stderr).toBe('');
}

const pattern = (byte: number, n: number) => new Uint8Array(n).fill(byte);

/** Adjacent extents with the same flags as one, as qemu-img map prints them. */
function merged(runs: Array<{ offset: number; length: number; data: boolean; zero: boolean }>) {
  const out: Array<{ start: number; length: number; data: boolean; zero: boolean }> = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last.data === r.data && last.zero === r.zero) last.length += r.length;
    else out.push({ start: r.offset, length: r.length, data: r.data, zero: r.zero });
  }
  return out;
}

/** What QEMU's nbd client reads of the export's block status. */
async function qemuMap(uri: string) {
  const m = await run('qemu-img', ['map', '--output=json', '-f', 'raw', uri]);
  expect(m.stderr).toBe('');
  return (JSON.parse(m.stdout) as Array<{ start: number; length: number; data: boolean; zero: boolean }>).map(({ start, length, data, zero }) => ({ start, length, data, zero }));
}

/** Runs `fn` on a node of a server of `kind`; what it returns is checked once the server has stopped (qemu-nbd's trace is complete only then). */
async function withServer(kind: ServerKind, fn: (dir: string, srv: NbdServer, node: BlockNode) => Promise<void | (() => void)>): Promise<void> {
  await withTempDir(async (dir) => {
    await makeImages(dir);
    const srv = await startServer(kind, dir, 's.raw');
    const { graph, node } = await openNbdNode(srv.path);
    let after: void | (() => void);
    try {
      after = await fn(dir, srv, node);
    } finally {
      await graph.closeAll();
      await srv.stop();
    }
    after?.();
  });
}

const KINDS: ServerKind[] = ['blockemu', ...(qemu.storageDaemon ? (['qsd'] as const) : []), 'qemu-nbd'];

describe.skipIf(!qemu.available)('the nbd client driver', () => {
  describe.each(KINDS)('against %s', (kind) => {
    it('reads, writes, zero writes, discards and flushes land as qemu-io makes them; block status is what QEMU reads', async () => {
      await withServer(kind, async (dir, srv, node) => {
        expect(node.size()).toBe(SIZE);
        expect(node.readOnly).toBe(false);
        expect(Buffer.from(await node.read(0, MiB)).equals(Buffer.from(pattern(0x5a, MiB)))).toBe(true);
        expect(Buffer.from(await node.read(2 * MiB - 100, 200)).equals(Buffer.concat([Buffer.alloc(100), Buffer.from(pattern(0x11, 100))]))).toBe(true);
        await node.write(5 * MiB + 3, pattern(0x33, 70_000));
        await node.write(6 * MiB, pattern(0x44, 64 * 1024), { fua: true });
        await node.writeZeroes(512 * 1024, 128 * 1024);
        await node.writeZeroes(40 * MiB, MiB, { mayUnmap: true });
        await node.flush();
        await expectIo(dir, `write -P 0x33 ${5 * MiB + 3} 70000`, `write -P 0x44 ${6 * MiB} 64k`, 'write -z 512k 128k', 'write -z 40M 1M');
        expect(merged(await node.blockStatusRuns(0, SIZE))).toEqual(await qemuMap(srv.uri));
        const cmp = await qemuImg('compare', '-f', 'raw', '-F', 'raw', '-U', join(dir, 's.raw'), join(dir, 'e.raw'));
        expect(cmp.stdout).toBe('Images are identical.\n');
      });
    });

    it('discard with discard=unmap passes TRIM to the server, which punches the hole', async () => {
      await withServer(kind, async (dir, srv, node) => {
        node.settings = { ...node.settings, discard: 'unmap' };
        await node.discard(0, MiB);
        await node.flush();
        // blockemu's file node cannot punch holes (Node has no fallocate): its discard keeps the data, as QEMU's may.
        if (kind !== 'blockemu') expect(Buffer.from(await node.read(0, MiB)).equals(Buffer.alloc(MiB))).toBe(true);
        expect(merged(await node.blockStatusRuns(0, SIZE))).toEqual(await qemuMap(srv.uri));
        return () => {
          if (kind === 'qemu-nbd') expect(srv.requests().filter((r) => r.type === CMD.TRIM)).toEqual([{ type: CMD.TRIM, flags: 0, from: 0, len: MiB }]);
        };
      });
    });

    it('many requests at once, replies matched by handle: 64 writes, then 64 reads of what each wrote', async () => {
      await withServer(kind, async (dir, _srv, node) => {
        const at = (i: number) => 8 * MiB + i * 96 * 1024;
        await Promise.all(Array.from({ length: 64 }, (_, i) => node.write(at(i), pattern(i + 1, 80 * 1024))));
        const back = await Promise.all(Array.from({ length: 64 }, (_, i) => node.read(at(i), 80 * 1024)));
        back.forEach((b, i) => expect(Buffer.from(b).equals(Buffer.from(pattern(i + 1, 80 * 1024))), `request ${i}`).toBe(true));
        await expectIo(dir, ...Array.from({ length: 64 }, (_, i) => `write -P ${i + 1} ${at(i)} 80k`));
        await node.flush();
        const cmp = await qemuImg('compare', '-f', 'raw', '-F', 'raw', '-U', join(dir, 's.raw'), join(dir, 'e.raw'));
        expect(cmp.stdout).toBe('Images are identical.\n');
      });
    });

    it('a request larger than the server takes (32 MiB) is split', async () => {
      await withServer(kind, async (dir, srv, node) => {
        const big = Buffer.alloc(40 * MiB);
        for (let i = 0; i < big.length; i += 4096) big[i] = (i >> 12) & 0xff;
        await node.write(MiB, big);
        expect(Buffer.from(await node.read(MiB, 40 * MiB)).equals(big)).toBe(true);
        await node.writeZeroes(0, SIZE);
        expect(Buffer.from(await node.read(4 * MiB, 36 * MiB)).equals(Buffer.alloc(36 * MiB))).toBe(true);
        return () => {
          if (kind !== 'qemu-nbd') return;
          const sizes = (type: number) => srv.requests().filter((r) => r.type === type).map((r) => r.len);
          expect(sizes(CMD.WRITE)).toEqual([32 * MiB, 8 * MiB]);
          expect(sizes(CMD.READ)).toEqual([32 * MiB, 8 * MiB, 32 * MiB, 4 * MiB]);
          expect(sizes(CMD.WRITE_ZEROES)).toEqual([32 * MiB, 16 * MiB]);
        };
      });
    });
  });

  it('the flags on the wire as QEMU sends them (qemu-nbd traced): FUA writes, NO_HOLE unless unmapping, REQ_ONE block status, FLUSH and DISC on close', async () => {
    await withTempDir(async (dir) => {
      await makeImages(dir);
      const srv = await startServer('qemu-nbd', dir, 's.raw');
      const { graph, node } = await openNbdNode(srv.path);
      node.settings = { ...node.settings, discard: 'unmap' };
      await node.write(0, pattern(1, 4096), { fua: true });
      await node.writeZeroes(4096, 4096);
      await node.writeZeroes(8192, 4096, { mayUnmap: true });
      await node.blockStatus(0, 4096);
      await graph.closeAll();
      await srv.stop();
      expect(srv.requests().map(({ type, flags }) => ({ type, flags }))).toEqual([
        { type: CMD.WRITE, flags: 1 },
        { type: CMD.WRITE_ZEROES, flags: 2 },
        { type: CMD.WRITE_ZEROES, flags: 0 },
        { type: CMD.BLOCK_STATUS, flags: 8 },
        // Closing flushes first, as bdrv_close does.
        { type: CMD.FLUSH, flags: 0 },
        { type: CMD.DISC, flags: 0 },
      ]);
    });
  });
});
