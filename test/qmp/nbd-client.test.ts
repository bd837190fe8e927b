/**
 * nbd nodes through QMP, played on qemu-storage-daemon and on blockemu
 * against the same kind of server (qemu-nbd on the session's image, one
 * export writable, one read-only): blockdev-add with good and bad
 * options, the nodes' names and info in query-named-block-nodes, what a
 * node refuses (reopening a read-only export read-write, resizing), data
 * read and written through the node (re-exported by the daemon, so
 * QEMU's tools reach it: qsd has no human-monitor-command), blockdev-del.
 * Replies must be equal; the image must end as qemu-io makes it.
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/qmp/client.js';
import { startExportDaemon } from '../helpers/export-daemon.js';
import { type NbdServer, startQemuNbd } from '../helpers/nbd-servers.js';
import { compareSessions, contents, type Step } from '../helpers/qmp-session.js';
import { qemu, qemuImg, qemuIo, run, withTempDir } from '../helpers/qemu.js';

const servers: NbdServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

/** d.raw served writable at rw.sock, r.raw read-only at ro.sock, and e.raw to hold the expectation. */
async function setup(dir: string): Promise<void> {
  await qemuImg('create', '-q', '-f', 'raw', join(dir, 'd.raw'), '4M');
  expect((await qemuIo('-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0x11 2M 64k', join(dir, 'd.raw'))).stderr).toBe('');
  await copyFile(join(dir, 'd.raw'), join(dir, 'r.raw'));
  await copyFile(join(dir, 'd.raw'), join(dir, 'e.raw'));
  servers.push(await startQemuNbd(dir, 'd.raw', { socket: 'rw.sock' }));
  servers.push(await startQemuNbd(dir, 'r.raw', { socket: 'ro.sock', readOnly: true }));
}

/** As setup, and q.qcow2 (data at 0 and 3M) served as bytes at q.sock, for a format over an nbd node. */
async function setupWithQcow2(dir: string): Promise<void> {
  await setup(dir);
  await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'q.qcow2'), '4M');
  expect((await qemuIo('-f', 'qcow2', '-c', 'write -P 0x31 0 128k', '-c', 'write -P 0x32 3M 64k', join(dir, 'q.qcow2'))).stderr).toBe('');
  servers.push(await startQemuNbd(dir, 'q.qcow2', { socket: 'q.sock' }));
}

const unix = (sock: string) => ({ type: 'unix', path: `\${DIR}/${sock}` });
/** The daemon's own export of node `n` (at d.sock), for QEMU's tools. */
const reexport = (node: string): Step[] => [
  ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/d.sock' } } }],
  ['block-export-add', { type: 'nbd', id: 'x', 'node-name': node, name: 'x', writable: true }],
];
const through = (...cmds: string[]) => async (dir: string) => (await qemuIo('-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), `nbd+unix:///x?socket=${dir}/d.sock`)).stdout.replace(/\d\d\.\d\d sec \([^)]*\)/g, 'T');
const mapThrough = async (dir: string) => JSON.parse((await run('qemu-img', ['map', '--output=json', '-f', 'raw', `nbd+unix:///x?socket=${dir}/d.sock`])).stdout) as unknown;

describe.skipIf(!qemu.available || !qemu.storageDaemon)('nbd nodes through QMP, as qemu-storage-daemon has them', () => {
  it('blockdev-add refusals and nodes, query-named-block-nodes, reopen refused, resize refused or left as it is, blockdev-del', async () => {
    const log = await compareSessions(setup, [
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: unix('none.sock'), export: 'exp' }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: { type: 'inet', host: '127.0.0.1', port: '1' } }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: unix('rw.sock'), export: 'nope' }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: unix('rw.sock') }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: unix('rw.sock'), export: 'exp', 'tls-creds': 'tls0' }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: { type: 'fd', str: '3' }, export: 'exp' }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: unix('rw.sock'), export: 'exp', 'x-dirty-bitmap': 'qemu:dirty-bitmap:b0' }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: unix('ro.sock'), export: 'exp' }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: unix('rw.sock'), export: 'exp', 'reconnect-delay': -1 }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: { type: 'unix' }, export: 'exp' }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: unix('rw.sock'), export: 'e'.repeat(4097) }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: unix('rw.sock'), export: 'exp', 'x-dirty-bitmap': 'b'.repeat(4097) }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'bad', server: { type: 'unix', path: `/tmp/${'p'.repeat(120)}` } }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'n0', server: unix('rw.sock'), export: 'exp', 'reconnect-delay': 2, 'open-timeout': 1 }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'n1', server: unix('ro.sock'), export: 'exp', 'read-only': true }],
      ['blockdev-add', { driver: 'raw', 'node-name': 'r2', 'auto-read-only': true, file: { driver: 'nbd', server: unix('ro.sock'), export: 'exp', 'tls-hostname': 'h' } }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'n3', server: unix('ro.sock'), export: 'exp', 'auto-read-only': true, 'x-dirty-bitmap': 'qemu:allocation-depth' }],
      ['query-named-block-nodes'],
      ['query-named-block-nodes', { flat: true }],
      ['blockdev-reopen', { options: [{ driver: 'nbd', 'node-name': 'n1', server: unix('ro.sock'), export: 'exp', 'read-only': false }] }],
      ['block_resize', { 'node-name': 'n0', size: 8 << 20 }],
      ['block_resize', { 'node-name': 'n0', size: 4 << 20 }],
      // block_resize does not ask for the exact size: a smaller one is taken and nothing changes.
      ['block_resize', { 'node-name': 'n0', size: 1 << 20 }],
      ['query-named-block-nodes', { flat: true }],
      ['blockdev-del', { 'node-name': 'n1' }],
      ['blockdev-del', { 'node-name': 'r2' }],
      ['query-named-block-nodes'],
    ]);
    expect(JSON.stringify(log)).toContain('Requested export not available');
    // qemu-nbd offers qemu:allocation-depth only with -A: n3 is refused, the other four nodes (and r2's file) are there.
    expect(log[16]).toEqual({ error: { class: 'GenericError', desc: 'Could not open image: Invalid argument' } });
    expect((log[17] as { return: unknown[] }).return).toHaveLength(4);
    expect(JSON.stringify(log[19])).toContain("Can't reopen read-only NBD mount as read/write");
  }, 60_000);

  it('data through an nbd node: read, written, zeroed and mapped by QEMU tools through the daemon re-exporting it; deleted after', async () => {
    const log = await compareSessions(
      setup,
      [
        ['blockdev-add', { driver: 'nbd', 'node-name': 'n0', server: unix('rw.sock'), export: 'exp' }],
        ...reexport('n0'),
        { sh: through('read -P 0x5a 0 1M', 'read -P 0x11 2M 64k', 'write -P 0x77 1M 100k', 'write -z 0 64k', 'discard 3M 64k', 'read -P 0x77 1M 100k') },
        { sh: mapThrough },
        ['blockdev-del', { 'node-name': 'n0' }],
        ['block-export-del', { id: 'x' }],
        ['blockdev-del', { 'node-name': 'n0' }],
        ['query-named-block-nodes'],
      ],
      (log) => log,
      // After quit: the served image holds what qemu-io makes of the same commands.
      async (dir) => {
        await qemuIo('-f', 'raw', '-c', 'write -P 0x77 1M 100k', '-c', 'write -z 0 64k', '-c', 'discard 3M 64k', join(dir, 'e.raw'));
        return (await qemuImg('compare', '-U', '-f', 'raw', '-F', 'raw', join(dir, 'd.raw'), join(dir, 'e.raw'))).stdout;
      },
    );
    expect(log[log.length - 1]).toBe('Images are identical.\n');
  }, 60_000);
});

describe.skipIf(!qemu.available || !qemu.storageDaemon)('formats and jobs over nbd nodes, as qemu-storage-daemon has them', () => {
  it('a qcow2 node over an nbd node; backups from nbd and qcow2-over-nbd sources keep the holes the server reports', async () => {
    const log = await compareSessions(setupWithQcow2, [
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'nbd', 'node-name': 'qf', server: unix('q.sock'), export: 'exp' } }],
      ['blockdev-add', { driver: 'nbd', 'node-name': 'n0', server: unix('rw.sock'), export: 'exp', 'read-only': true }],
      ['query-named-block-nodes'],
      ['drive-backup', { device: 'n0', target: '${DIR}/t0.qcow2', format: 'qcow2', sync: 'full', 'job-id': 'b0' }],
      { waitJob: 'b0' },
      ['drive-backup', { device: 'q', target: '${DIR}/t1.qcow2', format: 'qcow2', sync: 'full', 'job-id': 'b1' }],
      { waitJob: 'b1' },
      { sh: contents('t0.qcow2') },
      { sh: contents('t1.qcow2') },
      { sh: async (dir: string) => (await qemuImg('compare', '-U', '-f', 'qcow2', '-F', 'qcow2', join(dir, 'q.qcow2'), join(dir, 't1.qcow2'))).stdout },
      { sh: async (dir: string) => (await qemuImg('compare', '-U', '-f', 'raw', '-F', 'qcow2', join(dir, 'd.raw'), join(dir, 't0.qcow2'))).stdout },
      ['blockdev-del', { 'node-name': 'q' }],
      ['blockdev-del', { 'node-name': 'n0' }],
    ]);
    expect(log.filter((e) => e === 'Images are identical.\n')).toHaveLength(2);
  }, 60_000);
});

describe.skipIf(!qemu.available)('qemu-io through human-monitor-command on an nbd node (blockemu)', () => {
  it('reads, writes and maps; a read-only export refuses writes; the image ends as qemu-io makes it', async () => {
    await withTempDir(async (dir) => {
      await setup(dir);
      const d = await startExportDaemon('blockemu', { dir });
      const c: QmpClient = d.client;
      const hmp = async (line: string) => (await c.execute<string>('human-monitor-command', { 'command-line': line })).replace(/\d[\d.]* [KMG]?i?B\/sec and [\d.]+ ops\/sec|\d\d\.\d\d sec/g, 'T');
      try {
        await c.execute('blockdev-add', { driver: 'nbd', 'node-name': 'n0', server: { type: 'unix', path: join(dir, 'rw.sock') }, export: 'exp' });
        await c.execute('blockdev-add', { driver: 'nbd', 'node-name': 'n1', server: { type: 'unix', path: join(dir, 'ro.sock') }, export: 'exp', 'read-only': true });
        expect(await hmp('qemu-io n0 "read -P 0x5a 0 1M"')).toMatch(/^read 1048576\/1048576 bytes at offset 0\r\n/);
        expect(await hmp('qemu-io n0 "write -P 0x66 3M 8k"')).toMatch(/^wrote 8192\/8192 bytes at offset 3145728\r\n/);
        expect(await hmp('qemu-io n0 "write -z 4k 4k"')).toMatch(/^wrote 4096\/4096 bytes at offset 4096\r\n/);
        expect(await hmp('qemu-io n0 "flush"')).toBe('');
        expect(await hmp('qemu-io n1 "write 0 4k"')).toBe('Block node is read-only\r\n');
        expect(await hmp('qemu-io n1 "map"')).toBe('4 MiB (0x400000) bytes     allocated at offset 0 bytes (0x0)\r\n');
        await c.execute('blockdev-del', { 'node-name': 'n0' });
      } finally {
        await d.quit();
      }
      expect((await qemuIo('-f', 'raw', '-c', 'write -P 0x66 3M 8k', '-c', 'write -z 4k 4k', join(dir, 'e.raw'))).stderr).toBe('');
      expect((await qemuImg('compare', '-U', '-f', 'raw', '-F', 'raw', join(dir, 'd.raw'), join(dir, 'e.raw'))).stdout).toBe('Images are identical.\n');
    });
  });
});
