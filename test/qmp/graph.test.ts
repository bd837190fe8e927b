/**
 * The block graph as QEMU keeps it, played on qemu-storage-daemon and on
 * blockemu with the same images and the same QMP session: backing chains
 * as nodes (named in QEMU's order, json: names where the backing is not
 * the header's), image locks between the nodes of one daemon, the
 * backing node's op blockers, permission conflicts of backup targets in
 * the source's own chain, drive-backup's sync=top and sync=none targets,
 * and a snapshot's old top going read-only with its file. Replies, events
 * and what qemu-img reads of the results must be equal.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemu, qemuImg, qemuIo } from '../helpers/qemu.js';
import { compareSessions, describeImage, file, opens, type Step } from '../helpers/qmp-session.js';

/** base (data at 0) <- mid (64k) <- top (128k), each naming the next by a relative name, in `dir`. */
async function makeChain(dir: string): Promise<void> {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '1M'));
  await ok(qemuIo('-c', 'write -q -P 1 0 64k', join(dir, 'base.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'mid.qcow2')));
  await ok(qemuIo('-c', 'write -q -P 2 64k 64k', join(dir, 'mid.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')));
  await ok(qemuIo('-c', 'write -q -P 3 128k 64k', join(dir, 'top.qcow2')));
}

const compare = (steps: readonly Step[]) => compareSessions(makeChain, steps);

describe.skipIf(!qemu.available || !qemu.storageDaemon)('the block graph, as qemu-storage-daemon keeps it', () => {
  it('a backing chain named in its header is opened as nodes: query-named-block-nodes equal, flat and not; locks between nodes', async () => {
    const log = await compare([
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
      ['query-named-block-nodes'],
      ['query-named-block-nodes', { flat: true }],
      // The chain holds mid read-only, sharing reads only: a writer is refused, a reader is not.
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'mid-rw', file: file('mid.qcow2') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'mid-ro', 'read-only': true, file: file('mid.qcow2') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top-ro', 'read-only': true, file: file('top.qcow2') }],
      { sh: opens('top.qcow2') },
      { sh: opens('base.qcow2') },
      ['blockdev-del', { 'node-name': 'top' }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'mid-rw', file: file('mid.qcow2') }],
      ['query-named-block-nodes'],
    ]);
    expect(JSON.stringify(log[3])).toContain('Failed to get \\"write\\" lock');
    expect((log[1] as { return: unknown[] }).return).toHaveLength(6);
  }, 60_000);

  it('backing files named with json: in the header (iotest backing-file-invalidation): each node opened from one is named by its own file, not json:', async () => {
    const jsonChain = async (dir: string) => {
      const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
      const named = (img: string) => `json:${JSON.stringify({ driver: 'qcow2', file: { driver: 'file', filename: join(dir, img) } })}`;
      await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'j0.qcow2'), '1M'));
      await ok(qemuImg('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', named('j0.qcow2'), join(dir, 'j1.qcow2'), '1M'));
      await ok(qemuImg('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', named('j1.qcow2'), join(dir, 'j2.qcow2'), '1M'));
    };
    await compareSessions(jsonChain, [
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'node0', file: file('j2.qcow2') }],
      ['query-named-block-nodes', { flat: true }],
      ['query-named-block-nodes'],
    ]);
  }, 60_000);

  it('backing files named with a protocol in the header (file:PATH, null-co://): opened as the protocol says, names as QEMU gives them (iotest 228)', async () => {
    await compareSessions(
      async (dir) => {
        const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
        await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '1M'));
        await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', `file:${join(dir, 'base.qcow2')}`, '-F', 'qcow2', join(dir, 'top.qcow2')));
        await ok(qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'null-co://', '-F', 'raw', join(dir, 'nul.qcow2'), '1M'));
        await ok(qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'nope://x', '-F', 'raw', join(dir, 'bad.qcow2'), '1M'));
      },
      [
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'nul', file: file('nul.qcow2') }],
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'bad', file: file('bad.qcow2') }],
        ['query-named-block-nodes'],
      ],
    );
  }, 60_000);

  it('x-debug-query-block-graph: nodes, exports, a backup job and its filter, with every link and its permissions', async () => {
    await compare([
      ['x-debug-query-block-graph'],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
      ['blockdev-add', { driver: 'null-co', 'node-name': 'tgt', size: 1048576 }],
      ['x-debug-query-block-graph'],
      ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
      ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'top' }],
      ['blockdev-backup', { 'job-id': 'j0', device: 'top', target: 'tgt', sync: 'none' }],
      ['x-debug-query-block-graph'],
    ]);
  }, 60_000);

  it("x-blockdev-set-iothread's checks: unknown node and iothread, a node a BlockBackend uses (force overrides), back to the main loop", async () => {
    await compare([
      ['object-add', { 'qom-type': 'iothread', id: 'io0' }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
      ['x-blockdev-set-iothread', { 'node-name': 'nope', iothread: 'io0' }],
      ['x-blockdev-set-iothread', { 'node-name': 'top', iothread: 'io1' }],
      ['x-blockdev-set-iothread', { 'node-name': 'top', iothread: 'io0' }],
      ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
      ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'top' }],
      ['x-blockdev-set-iothread', { 'node-name': 'top', iothread: null }],
      ['x-blockdev-set-iothread', { 'node-name': 'top', iothread: null, force: true }],
    ]);
  }, 60_000);

  it('aio=native needs cache.direct=on, given or inherited (raw_open_common)', async () => {
    await compare([
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'a', file: { ...file('top.qcow2'), aio: 'native' } }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'b', cache: { direct: true }, file: { ...file('top.qcow2'), aio: 'native' } }],
      ['blockdev-add', { ...file('base.qcow2', 'c'), aio: 'native', cache: { direct: true } }],
      ['blockdev-add', { ...file('mid.qcow2', 'd'), aio: 'threads' }],
      ['query-named-block-nodes', { flat: true }],
    ]);
  }, 60_000);

  it('explicit backing links and backing: null; a backing node is busy for snapshots and deletion; a backup target in the source chain conflicts', async () => {
    const log = await compare([
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'base', 'read-only': true, file: file('base.qcow2') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'mid', backing: 'base', file: file('mid.qcow2') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', backing: 'mid', file: file('top.qcow2') }],
      ['query-named-block-nodes'],
      ['blockdev-snapshot-sync', { 'node-name': 'mid', 'snapshot-file': '${DIR}/snap.qcow2', 'snapshot-node-name': 'snap' }],
      ['blockdev-del', { 'node-name': 'mid' }],
      ['blockdev-backup', { device: 'top', target: 'mid', sync: 'full', 'job-id': 'j1' }],
      ['blockdev-backup', { device: 'top', target: 'base', sync: 'full', 'job-id': 'j1' }],
      ['drive-backup', { device: 'top', target: '${DIR}/mid.qcow2', sync: 'full', mode: 'existing', 'job-id': 'j2' }],
      ['blockdev-del', { 'node-name': 'top' }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'nob', backing: null, 'read-only': true, file: file('top.qcow2') }],
      ['query-named-block-nodes'],
    ]);
    expect(JSON.stringify(log[4])).toContain("Node 'mid' is busy: node is used as backing hd of 'top'");
    expect(JSON.stringify(log[6])).toContain('Permission conflict');
  }, 60_000);

  it('drive-backup: sync=top copies the top layer onto the same backing file, refused for raw; sync=none reads through the source', async () => {
    await compare([
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
      ['drive-backup', { device: 'top', target: '${DIR}/t.raw', sync: 'top', format: 'raw', 'job-id': 'j0' }],
      ['drive-backup', { device: 'top', target: '${DIR}/t.qcow2', sync: 'top', format: 'qcow2', 'job-id': 'j1' }],
      { waitJob: 'j1' },
      { sh: describeImage('t.qcow2') },
      ['drive-backup', { device: 'top', target: '${DIR}/n.qcow2', sync: 'none', format: 'qcow2', 'job-id': 'j2' }],
      ['query-named-block-nodes'],
      { sh: describeImage('n.qcow2') },
      ['block-job-cancel', { device: 'j2' }],
      { waitJob: 'j2' },
    ]);
  }, 60_000);

  it('permissions of backups and exports: read-only targets, writable exports of a filtered source and under read-only format nodes', async () => {
    const log = await compare([
      ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'a', backing: null, file: file('top.qcow2') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'b', backing: null, file: file('mid.qcow2') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'cro', 'read-only': true, file: { ...file('base.qcow2'), 'node-name': 'fro' } }],
      ['blockdev-backup', { device: 'a', target: 'cro', sync: 'none', 'job-id': 'j0' }],
      ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'fro', writable: true }],
      ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'fro' }],
      ['blockdev-add', { driver: 'raw', 'node-name': 'raw-fro', file: 'fro' }],
      // Once the backup filter has a parent (the export, moved above it), nobody else may write its source.
      ['block-export-add', { type: 'nbd', id: 'e1', 'node-name': 'a', writable: true }],
      ['blockdev-backup', { device: 'a', target: 'b', sync: 'none', 'job-id': 'j1' }],
      ['block-export-add', { type: 'nbd', id: 'e2', 'node-name': 'a', writable: true }],
      ['block-export-add', { type: 'nbd', id: 'e3', 'node-name': 'b', writable: true }],
      ['query-block-exports'],
      ['block-job-cancel', { device: 'j1' }],
      { waitJob: 'j1' },
      ['block-export-add', { type: 'nbd', id: 'e2', 'node-name': 'a', writable: true }],
      ['query-block-exports'],
    ]);
    expect(JSON.stringify(log[4])).toContain('Block node is read-only');
    expect(JSON.stringify(log[10])).toContain('Permission conflict');
  }, 60_000);

  it('block_resize: grow and shrink through the format, refusals in QEMU words (file under a format, fixed raw, exported node, null), bitmaps follow', async () => {
    const img = (name: string, fmt: string, size: string) => async (dir: string) => (await qemuImg('create', '-q', '-f', fmt, join(dir, name), size)).stderr;
    await compare([
      { sh: img('a.qcow2', 'qcow2', '1M') },
      { sh: img('r.raw', 'raw', '1M') },
      ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'a', file: { ...file('a.qcow2'), 'node-name': 'af' } }],
      ['blockdev-add', { driver: 'raw', 'node-name': 'r', file: file('r.raw') }],
      ['blockdev-add', { driver: 'raw', 'node-name': 'rfix', size: 512, file: { ...file('r.raw'), locking: 'off' } }],
      ['block-dirty-bitmap-add', { node: 'a', name: 'b0', granularity: 65536 }],
      ['block_resize', { 'node-name': 'a', size: 2097152 }],
      ['block_resize', { device: 'a', size: 2097152 }],
      ['block_resize', { 'node-name': 'a', size: -1 }],
      ['block_resize', { 'node-name': 'nope', size: 1 }],
      ['block_resize', { 'node-name': 'af', size: 1 }],
      ['block_resize', { 'node-name': 'a', size: 1000 }],
      ['block_resize', { 'node-name': 'a', size: 524288 }],
      ['block_resize', { 'node-name': 'r', size: 3145728 }],
      ['block_resize', { 'node-name': 'rfix', size: 1024 }],
      ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'r' }],
      ['block_resize', { 'node-name': 'r', size: 1048576 }],
      ['blockdev-add', { driver: 'null-co', 'node-name': 'n' }],
      ['block_resize', { 'node-name': 'n', size: 1048576 }],
      ['query-named-block-nodes', { flat: true }],
      { sh: describeImage('a.qcow2') },
    ]);
  }, 60_000);

  it('a snapshot makes the old top read-only together with its inline file node, and its locks follow', async () => {
    // blockdev-snapshot onto an overlay the monitor added: qsd drops blockdev-snapshot-sync's overlay as soon as nothing uses it.
    await compare([
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: { ...file('top.qcow2'), 'node-name': 'top-file' } }],
      { sh: opens('top.qcow2') },
      { sh: async (dir) => (await qemuImg('create', '-q', '-f', 'qcow2', '-b', join(dir, 'top.qcow2'), '-F', 'qcow2', join(dir, 'snap.qcow2'))).stderr },
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'snap', backing: null, file: file('snap.qcow2') }],
      ['blockdev-snapshot', { node: 'top', overlay: 'snap' }],
      ['query-named-block-nodes'],
      { sh: opens('top.qcow2') },
      { sh: opens('snap.qcow2') },
      ['blockdev-del', { 'node-name': 'top' }],
      ['blockdev-del', { 'node-name': 'snap' }],
      ['blockdev-del', { 'node-name': 'top' }],
      { sh: opens('top.qcow2') },
    ]);
  }, 60_000);
});
