/**
 * qcow2 images found corrupt in use, played on qemu-storage-daemon and on
 * blockemu with the same damaged images and the same guest I/O through an
 * NBD export (iotest 060's cases): the BLOCK_IMAGE_CORRUPTED events, what
 * the guest's requests get (EIO, then EINVAL once the node lost its
 * driver), the node queries, and afterwards the corrupt bit and what
 * `qemu-img check` says must be equal.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemu, qemuImg, qemuIo, run } from '../helpers/qemu.js';
import { compareSessions, file, type Step } from '../helpers/qmp-session.js';

const COPIED = 1n << 63n;

/** Where an image's tables are: its L1 table and the L2 table of guest offset 0. */
async function tables(path: string): Promise<{ l1: number; l2: number }> {
  const f = await open(path, 'r');
  try {
    const b = Buffer.alloc(8);
    await f.read(b, 0, 8, 40);
    const l1 = Number(b.readBigUInt64BE(0));
    await f.read(b, 0, 8, l1);
    return { l1, l2: Number(b.readBigUInt64BE(0) & 0x00fffffffffffe00n) };
  } finally {
    await f.close();
  }
}

async function poke(path: string, at: number, value: bigint): Promise<void> {
  const f = await open(path, 'r+');
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(value);
  await f.write(b, 0, 8, at);
  await f.close();
}

/** `name`: a 4 MiB qcow2 image (64 KiB clusters, `compat`) with data at 0 and 1 MiB, damaged by `damage`. */
const image = (name: string, damage: (path: string, t: { l1: number; l2: number }) => Promise<void>, compat = '1.1') => async (dir: string) => {
  const path = join(dir, name);
  expect((await qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, path, '4M')).stderr).toBe('');
  expect((await qemuIo('-c', 'write -q -P 5 0 64k', '-c', 'write -q -P 6 1M 64k', path)).stderr).toBe('');
  await damage(path, await tables(path));
};

/** L2 entry 16 (guest 1 MiB) pointing at `host`, with the copied flag or without. */
const entry16 = (host: (t: { l1: number; l2: number }) => number, copied = true) => (path: string, t: { l1: number; l2: number }) =>
  poke(path, t.l2 + 16 * 8, (copied ? COPIED : 0n) | BigInt(host(t)));

/** qemu-io commands through the export `x` (read-only with `-r` first); each command's outcome without the timing lines. */
const io = (...cmds: string[]) => async (dir: string) => {
  const [ro, rest] = cmds[0] === '-r' ? [['-r'], cmds.slice(1)] : [[], cmds];
  const r = await run('qemu-io', [...ro, '-f', 'raw', ...rest.flatMap((c) => ['-c', c]), `nbd+unix:///x?socket=${join(dir, 'nbd.sock')}`]);
  return [...r.stdout.split('\n').filter((l) => l !== '' && !l.includes(' ops; ')), r.stderr];
};

const exportX = (name: string, readOnly = false): Step[] => [
  ['blockdev-add', { driver: 'qcow2', 'node-name': 'x', file: file(name, 'xf'), ...(readOnly ? { 'read-only': true } : {}) }],
  ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
  ['block-export-add', { type: 'nbd', id: 'e', 'node-name': 'x', writable: !readOnly }],
];
const afterwards: Step[] = [
  ['query-named-block-nodes', { flat: true }],
  ['query-blockstats', { 'query-nodes': true }],
  ['block-export-del', { id: 'e' }],
  ['blockdev-del', { 'node-name': 'x' }],
  ['query-named-block-nodes', { flat: true }],
];

/** The corrupt bit and `qemu-img check`'s verdict once the daemon is gone. */
const verdict = (name: string) => async (dir: string) => {
  const info = JSON.parse((await run('qemu-img', ['info', '--output=json', join(dir, name)])).stdout) as { 'format-specific': { data: Record<string, unknown> } };
  const check = await run('qemu-img', ['check', join(dir, name)]);
  return { corrupt: info['format-specific'].data['corrupt'] ?? null, check: check.code };
};

const session = (setup: (dir: string) => Promise<void>, name: string, steps: Step[]) => compareSessions(setup, steps, undefined, verdict(name));

describe.skipIf(!qemu.available || !qemu.storageDaemon)('BLOCK_IMAGE_CORRUPTED, as qemu-storage-daemon signals it', () => {
  it('an unaligned L2 table offset: fatal on a writable node, which then serves nothing and is ejected; the image will not open read-write again', async () => {
    const log = await session(image('c.qcow2', (p, t) => poke(p, t.l1, COPIED | BigInt(t.l2 + 512))), 'c.qcow2', [
      ...exportX('c.qcow2'),
      { sh: io('read 0 4k', 'read 0 4k', 'write 2M 4k', 'read 2M 4k', 'flush') },
      ...afterwards,
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'y', file: 'xf' }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'y', file: 'xf', 'read-only': true }],
      ['query-named-block-nodes', { flat: true }],
    ]);
    expect(JSON.stringify(log)).toContain('"fatal":true');
  }, 60_000);

  it('the same on a read-only node: not fatal, reported once, every read of the area fails, the image stays unmarked', async () => {
    const log = await session(image('c.qcow2', (p, t) => poke(p, t.l1, COPIED | BigInt(t.l2 + 512))), 'c.qcow2', [
      ...exportX('c.qcow2', true),
      { sh: io('-r', 'read 0 4k', 'read 1M 4k', 'read 3M 4k') },
      ...afterwards,
    ]);
    expect(JSON.stringify(log)).toContain('"fatal":false');
  }, 60_000);

  it('an unaligned data cluster: met by a read, and by a write in place', async () => {
    const damaged = (name: string) => image(name, entry16((t) => t.l2 + 0x20000 + 512));
    const read = await session(damaged('c.qcow2'), 'c.qcow2', [...exportX('c.qcow2'), { sh: io('read 0 4k', 'read 1M 4k', 'read 0 4k') }, ...afterwards]);
    expect(JSON.stringify(read)).toContain('Cluster allocation offset 0x60200 unaligned (L2 offset: 0x40000, L2 index: 0x10)');
    const write = await session(damaged('c.qcow2'), 'c.qcow2', [...exportX('c.qcow2'), { sh: io('write 1049088 4k', 'read 0 4k') }, ...afterwards]);
    expect(JSON.stringify(write)).toContain('Data cluster offset 0x60200 unaligned (guest offset: 0x100200)');
  }, 60_000);

  it('a shared cluster that cannot be freed: not fatal, the write allocates anew and succeeds', async () => {
    const log = await session(image('c.qcow2', entry16((t) => t.l2 + 0x20000 + 512, false)), 'c.qcow2', [
      ...exportX('c.qcow2'),
      { sh: io('write -P 7 1M 64k', 'read -P 7 1M 64k', 'write -P 8 1M 64k') },
      ...afterwards,
    ]);
    expect(JSON.stringify(log)).toContain('Cannot free unaligned cluster 0x60200');
  }, 60_000);

  it('guest writes that would land on metadata are refused: the L1 table, an L2 table, the refcount table and a refcount block', async () => {
    const targets: Array<[string, (t: { l1: number; l2: number }) => number]> = [
      ['active L1 table', (t) => t.l1],
      ['active L2 table', (t) => t.l2],
      ['refcount table', () => 0x10000],
      ['refcount block', () => 0x20000],
    ];
    for (const [what, host] of targets) {
      const log = await session(image('c.qcow2', entry16(host)), 'c.qcow2', [
        ...exportX('c.qcow2'),
        // Across the cluster before (allocated anew) into the damaged one.
        { sh: io('read 1M 4k', 'write -P 9 1044480 8k', 'read 0 4k') },
        ...afterwards,
      ]);
      expect({ what, log: JSON.stringify(log) }).toMatchObject({ log: expect.stringContaining(`Preventing invalid write on metadata (overlaps with ${what})`) });
    }
  }, 120_000);

  it('a zero cluster in a version 2 image', async () => {
    // qemu-storage-daemon's wr_highest_offset here is 0 in most runs and 65536 in some (a write of its own that may
    // or may not have been accounted when query-blockstats comes, seen once in a loaded suite run): left out.
    const withoutHighest = (l: unknown[]) => JSON.parse(JSON.stringify(l, (k, v: unknown) => (k === 'wr_highest_offset' ? undefined : v))) as unknown[];
    const log = await compareSessions(image('c.qcow2', (p, t) => poke(p, t.l2, 1n), '0.10'), [...exportX('c.qcow2'), { sh: io('read 1M 4k', 'read 0 4k') }, ...afterwards], withoutHighest, verdict('c.qcow2'));
    expect(JSON.stringify(log)).toContain('Zero cluster entry found in pre-v3 image (L2 offset: 0x40000, L2 index: 0)');
  }, 60_000);
});
