/**
 * query-blockstats and the write threshold, played on qemu-storage-daemon
 * and on blockemu with the same images, the same QMP session and the same
 * guest I/O (qemu-io through NBD exports): replies and events must be
 * equal. In the storage daemon no BlockBackend has a name, so the list
 * without query-nodes is empty, and nodes count no requests (QEMU's NBD
 * server does no accounting): what a node shows is the highest offset
 * written, the file driver's discard counters and how its children nest.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemu, qemuImg, run } from '../helpers/qemu.js';
import { compareSessions, file, type Step } from '../helpers/qmp-session.js';

async function images(dir: string): Promise<void> {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'a.qcow2'), '4M'));
  await ok(qemuImg('create', '-q', '-f', 'raw', join(dir, 'b.raw'), '4M'));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '4M'));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 't.qcow2'), '4M'));
  await ok(qemuImg('create', '-q', '-f', 'raw', join(dir, 't.raw'), '4M'));
}

/** qemu-io commands through the NBD export `name` of the session's daemon; the exit code and what it printed to stderr. */
const io = (name: string, ...cmds: string[]) => async (dir: string) => {
  const r = await run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), `nbd+unix:///${name}?socket=${join(dir, 'nbd.sock')}`]);
  return { code: r.code, stderr: r.stderr };
};

const nodes: Step[] = [
  ['blockdev-add', { driver: 'qcow2', 'node-name': 'a', file: file('a.qcow2', 'af') }],
  ['blockdev-add', { driver: 'file', 'node-name': 'bf', filename: '${DIR}/b.raw', discard: 'unmap' }],
  ['blockdev-add', { driver: 'raw', 'node-name': 'b', file: 'bf', discard: 'unmap' }],
  ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
  ['block-export-add', { type: 'nbd', id: 'ea', 'node-name': 'a', writable: true }],
  ['block-export-add', { type: 'nbd', id: 'eb', 'node-name': 'b', writable: true }],
];
const stats: Step = ['query-blockstats', { 'query-nodes': true }];
const thresholds: Step = { look: async (c) => (await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true })).map((n) => [n['node-name'], n['write_threshold']]) };

describe.skipIf(!qemu.available || !qemu.storageDaemon)('query-blockstats and write thresholds, as qemu-storage-daemon keeps them', () => {
  it('after guest I/O through NBD: highest offsets written, discard counters, nesting; no BlockBackend listed', async () => {
    const log = await compareSessions(images, [
      ['query-blockstats'],
      ['query-blockstats', { 'query-nodes': false }],
      stats,
      ...nodes,
      { sh: io('a', 'write -P 1 0 64k', 'write 1M 4k', 'read 0 4k', 'flush', 'discard 0 4k', 'write -z 2M 64k', 'write 1M 1') },
      { sh: io('b', 'write -P 1 0 64k', 'discard 0 64k', 'write -z 128k 4k', 'write -u -z 256k 64k', 'discard 1M 512', 'read 0 1M') },
      ['query-blockstats'],
      stats,
      ['block-export-del', { id: 'ea' }],
      ['blockdev-del', { 'node-name': 'a' }],
      stats,
      ['query-blockstats', { 'query-nodes': 'yes' }],
      ['query-blockstats', { bogus: 1 }],
    ]);
    expect(JSON.stringify(log)).toContain('"wr_highest_offset":2162688');
    expect(JSON.stringify(log)).toContain('"discard-nb-ok":2');
  }, 60_000);

  it('nesting: backing chains (not nested at node level), filters, raw windows, a backup filter and its target', async () => {
    await compareSessions(images, [
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
      ['blockdev-add', { driver: 'raw', 'node-name': 'win', offset: 512, size: 65536, file: file('b.raw') }],
      ['blockdev-add', { driver: 'blkdebug', 'node-name': 'dbg', image: { driver: 'raw', 'node-name': 'dr', file: file('b.raw') }, 'read-only': true }],
      // A raw target: a qcow2 one would write its new tables at once in QEMU, at the next flush in blockemu (README).
      ['blockdev-add', { driver: 'raw', 'node-name': 't', file: file('t.raw') }],
      ['blockdev-backup', { 'job-id': 'j', device: 'top', target: 't', sync: 'full', speed: 1, 'filter-node-name': 'cbw' }],
      { started: 'j', offset: 1048576 },
      stats,
      ['block-job-cancel', { device: 'j', force: true }],
      { waitJob: 'j' },
      stats,
    ]);
  }, 60_000);

  it('write thresholds: refusals, one event per threshold at the write that crosses it, zero writes and discards, format and protocol nodes, uint64 values', async () => {
    await compareSessions(images, [
      ...nodes,
      ['block-set-write-threshold', { 'node-name': 'nope', 'write-threshold': 5 }],
      ['block-set-write-threshold', { 'node-name': 'a' }],
      ['block-set-write-threshold', { 'node-name': 'a', 'write-threshold': 'x' }],
      ['block-set-write-threshold', { 'node-name': 'a', 'write-threshold': 1048576 }],
      thresholds,
      // Ending exactly at the threshold does not cross it.
      { sh: io('a', 'write 0 64k', 'write 1040384 8192') },
      thresholds,
      { sh: io('a', 'write 1048575 2', 'write 1048575 2') },
      thresholds,
      ['block-set-write-threshold', { 'node-name': 'a', 'write-threshold': 2097152 }],
      { sh: io('a', 'write -z 2M 1M') },
      ['block-set-write-threshold', { 'node-name': 'b', 'write-threshold': 100 }],
      ['block-set-write-threshold', { 'node-name': 'bf', 'write-threshold': 100000 }],
      // b's discard crosses 100; bf never gets a request past 100000.
      { sh: io('b', 'discard 0 4096', 'write 0 512') },
      thresholds,
      ['block-set-write-threshold', { 'node-name': 'bf', 'write-threshold': 0 }],
      { sh: io('b', 'write 1M 512') },
      // On the protocol node under qcow2 (what libvirt watches): the image's own host writes cross it.
      ['block-set-write-threshold', { 'node-name': 'af', 'write-threshold': 300000 }],
      { sh: io('a', 'write 3M 4k') },
      ['block-set-write-threshold', { 'node-name': 'af', 'write-threshold': -1 }],
      // JSON.stringify writes these as 9223372036854776000 (a uint64 to QEMU's parser) and 18446744073709552000 (past uint64: a double).
      ['block-set-write-threshold', { 'node-name': 'b', 'write-threshold': 2 ** 63 }],
      ['block-set-write-threshold', { 'node-name': 'a', 'write-threshold': 2 ** 64 }],
      thresholds,
      { sh: io('b', 'write 3M 1M') },
      stats,
    ]);
  }, 60_000);

  it('a backup crosses the thresholds of its target node and of the file below it', async () => {
    await compareSessions(images, [
      ...nodes,
      // One data cluster: its copy is the only write that can reach the target's file past its tables (the copy's tasks run in parallel).
      { sh: io('a', 'write -P 3 0 64k') },
      ['blockdev-add', { driver: 'qcow2', 'node-name': 't', file: file('t.qcow2', 'tf') }],
      // Only the copy ending at the disk's end crosses it, whatever the tasks' order and size.
      ['block-set-write-threshold', { 'node-name': 't', 'write-threshold': 4194303 }],
      // Past the tables a new qcow2 image's first write allocates (QEMU writes them at once, blockemu at the next flush).
      ['block-set-write-threshold', { 'node-name': 'tf', 'write-threshold': 327680 }],
      ['blockdev-backup', { 'job-id': 'j', device: 'a', target: 't', sync: 'full' }],
      { waitJob: 'j' },
      thresholds,
      stats,
    ]);
  }, 60_000);
});
