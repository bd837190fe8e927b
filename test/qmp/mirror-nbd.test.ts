/**
 * Storage migration as libvirt runs it for non-shared storage: a
 * destination qemu-storage-daemon serves an empty image over NBD
 * (nbd-server-start, a writable block-export-add); the source daemon —
 * qemu-storage-daemon, then blockemu, with the same session — opens that
 * export as an nbd node with a raw node above it (libvirt's
 * migration-<disk>-storage and -format), mirrors its disk there with
 * blockdev-mirror (sync=full for --copy-storage-all, sync=top for
 * --copy-storage-inc, write-blocking for
 * VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES) while the guest writes
 * through an export of the disk, and once the job is ready cancels it so
 * the source keeps its disk (or completes it, pivoting the guest onto the
 * remote copy, as a block copy to a remote target would). Replies, events
 * and the nodes must be equal, and qemu-img must find the destination
 * image equal to the source and mapped alike (zeroes sent as zeroes, data
 * as data).
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type NbdServer, startDaemonExport } from '../helpers/nbd-servers.js';
import { qemu, qemuImg, qemuIo, run } from '../helpers/qemu.js';
import { compareSessions, contents, file, sameImages, type Step } from '../helpers/qmp-session.js';

type Format = 'raw' | 'qcow2';

/** The destination daemons, by session directory: each session has its own, stopped once the source daemon has quit. */
const destinations = new Map<string, NbdServer>();
afterAll(async () => {
  for (const d of destinations.values()) await d.stop();
});

/**
 * Source images — src.<fmt> (4 MiB: data, a zero cluster, more data, holes
 * between), top.qcow2 over base.qcow2 — and the destination: dst.<fmt>
 * empty (d-top.qcow2 over the same base for sync=top), served by
 * qemu-storage-daemon as export `exp` at qsd-dst/nbd.sock.
 */
const setup = (dst: { image: string; format: Format }) => async (dir: string) => {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  for (const fmt of ['raw', 'qcow2'] as const) {
    await ok(qemuImg('create', '-q', '-f', fmt, join(dir, `src.${fmt}`), '4M'));
    await ok(qemuIo('-f', fmt, '-c', 'write -q -P 1 0 1M', '-c', 'write -q -z 2M 64k', '-c', 'write -q -P 2 3M 128k', join(dir, `src.${fmt}`)));
    await ok(qemuImg('create', '-q', '-f', fmt, join(dir, `dst.${fmt}`), '4M'));
  }
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '4M'));
  await ok(qemuIo('-c', 'write -q -P 5 0 2M', join(dir, 'base.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')));
  await ok(qemuIo('-c', 'write -q -P 6 1M 64k', join(dir, 'top.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'd-top.qcow2')));
  destinations.set(dir, await startDaemonExport('qsd', dir, dst.image, { format: dst.format, socket: 'dst' }));
};

/**
 * The session's destination stops (its image is then complete on disk),
 * and what qemu-img finds of it: the map first, since reading the image
 * (compare) brings zeroed-but-allocated ranges of a raw file into the page
 * cache, where SEEK_DATA then calls them data.
 */
const destination = (src: string, dst: string) => async (dir: string) => {
  await destinations.get(dir)?.stop();
  destinations.delete(dir);
  const map = await contents(dst)(dir);
  return { compare: await sameImages(src, dst)(dir), contents: map };
};

/** Where clusters land in the source's file is left out (as in mirror.test.ts). */
const withoutHostLayout = (log: unknown[]): unknown[] => JSON.parse(JSON.stringify(log, (k, v: unknown) => (k === 'actual-size' ? undefined : v)));

/** A guest write through the source daemon's export of its disk. */
const guest = (cmd: string) => async (dir: string) => (await run('qemu-io', ['-f', 'raw', '-c', cmd, `nbd+unix:///disk?socket=${join(dir, 'nbd.sock')}`])).code;

const JOB = 'drive-virtio-disk0';

interface Migration {
  /** The disk's image on the source (its node is `disk`). */
  source: string;
  format: Format;
  sync: 'full' | 'top';
  copyMode?: 'background' | 'write-blocking';
  /** Where the first copy ends: a speed of 1 byte/s holds the job there while the guest writes. */
  firstCopy: number;
  /** libvirt cancels the ready job (the source keeps its disk); a block copy completes it. */
  end: 'cancel' | 'complete';
}

/** The source daemon's session, in libvirt's commands and node names. */
function migration(m: Migration): Step[] {
  const steps: Step[] = [
    ['blockdev-add', { driver: m.format, 'node-name': 'disk', file: file(m.source) }],
    // The guest's disk, reachable from outside (qsd has no devices).
    ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
    ['block-export-add', { type: 'nbd', id: 'guest', 'node-name': 'disk', name: 'disk', writable: true }],
    ['blockdev-add', { driver: 'nbd', 'node-name': 'migration-vda-storage', server: { type: 'unix', path: '${DIR}/qsd-dst/nbd.sock' }, export: 'exp', 'read-only': false, discard: 'unmap' }],
    ['blockdev-add', { driver: 'raw', 'node-name': 'migration-vda-format', 'read-only': false, discard: 'unmap', file: 'migration-vda-storage' }],
    ['blockdev-mirror', { 'job-id': JOB, device: 'disk', target: 'migration-vda-format', speed: 1, sync: m.sync, 'auto-finalize': true, 'auto-dismiss': false, ...(m.copyMode ? { 'copy-mode': m.copyMode } : {}) }],
    { started: JOB, offset: m.firstCopy },
    // Over data copied already, and over data not copied yet.
    { sh: guest('write -P 9 0 64k') },
    { sh: guest('write -P 10 3M 64k') },
    ['query-block-jobs'],
    ['block-job-set-speed', { device: JOB, speed: 0 }],
    { waitJob: JOB, status: 'ready' },
    ['query-named-block-nodes', { flat: true }],
    { sh: guest('write -P 11 1M 64k') },
  ];
  if (m.end === 'cancel') {
    steps.push(
      ['block-job-cancel', { device: JOB }],
      { waitJob: JOB, status: 'concluded' },
      ['query-block-jobs'],
      ['job-dismiss', { id: JOB }],
      { waitJob: JOB },
      ['blockdev-del', { 'node-name': 'migration-vda-format' }],
      ['blockdev-del', { 'node-name': 'migration-vda-storage' }],
      ['query-named-block-nodes', { flat: true }],
      ['query-block-exports'],
    );
  } else {
    steps.push(
      ['job-complete', { id: JOB }],
      { waitJob: JOB, status: 'concluded' },
      ['job-dismiss', { id: JOB }],
      { waitJob: JOB },
      // The guest's disk is the remote copy now: the source's image no longer changes.
      ['query-block-exports'],
      ['query-named-block-nodes', { flat: true }],
      ['blockdev-del', { 'node-name': 'disk' }],
      { sh: guest('write -P 12 2M 64k') },
    );
  }
  return steps;
}

/**
 * Proxmox's migration of a local disk (qemu_drive_mirror): drive-mirror
 * with mode=existing to an NBD URI and format=nbd (the target is the nbd
 * node itself), the guest writing meanwhile, cancelled once ready. First
 * the names and modes QEMU refuses or takes: a bad URL, a plain path for
 * the nbd format, a target "created" on the export (raw data over it: QEMU
 * opens the export and zeroes its first sector), one probed without a
 * format.
 */
function proxmox(): Step[] {
  const uri = 'nbd:unix:${DIR}/qsd-dst/nbd.sock:exportname=exp';
  const mirror = (target: string, more: Record<string, unknown>): Step => ['drive-mirror', { 'job-id': 'drive-scsi0', device: 'disk', target, sync: 'full', ...more }];
  const cancelled: Step[] = [['block-job-cancel', { device: 'drive-scsi0', force: true }], { waitJob: 'drive-scsi0' }];
  return [
    ['blockdev-add', { driver: 'raw', 'node-name': 'disk', file: file('src.raw') }],
    ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
    ['block-export-add', { type: 'nbd', id: 'guest', 'node-name': 'disk', name: 'disk', writable: true }],
    mirror('nbd+unix:///exp', { mode: 'existing', format: 'nbd' }),
    mirror('nbd:127.0.0.1', { mode: 'existing', format: 'raw' }),
    mirror('nbd:unix:${DIR}/none.sock:exportname=exp', { mode: 'existing', format: 'nbd' }),
    mirror('nbd:unix:${DIR}/qsd-dst/nbd.sock:exportname=nope', { mode: 'existing', format: 'nbd' }),
    mirror('${DIR}/dst.raw', { mode: 'existing', format: 'nbd' }),
    mirror('nbd:', { mode: 'existing', format: 'nbd' }),
    mirror(uri, { format: 'raw', speed: 1 }),
    ...cancelled,
    mirror('nbd+unix:///exp?socket=${DIR}/qsd-dst/nbd.sock', { mode: 'existing', speed: 1 }),
    ['query-named-block-nodes', { flat: true }],
    ...cancelled,
    mirror(uri, { mode: 'existing', format: 'nbd', speed: 1 }),
    { started: 'drive-scsi0', offset: 4 << 20 },
    { sh: guest('write -P 9 0 64k') },
    ['block-job-set-speed', { device: 'drive-scsi0', speed: 0 }],
    { waitJob: 'drive-scsi0', status: 'ready' },
    ['query-named-block-nodes', { flat: true }],
    { sh: guest('write -P 11 1M 64k') },
    ['block-job-cancel', { device: 'drive-scsi0' }],
    { waitJob: 'drive-scsi0' },
    ['query-named-block-nodes', { flat: true }],
  ];
}

const play = (m: Migration, dst: { image: string; format: Format }) => compareSessions(setup(dst), migration(m), withoutHostLayout, destination(m.source, dst.image));

describe.skipIf(!qemu.available || !qemu.storageDaemon)('storage migration: blockdev-mirror to an NBD export of qemu-storage-daemon', () => {
  it('qcow2 disk, sync=full, the ready job cancelled (libvirt --copy-storage-all): the destination equals the source', async () => {
    const log = await play({ source: 'src.qcow2', format: 'qcow2', sync: 'full', firstCopy: 1 << 20, end: 'cancel' }, { image: 'dst.qcow2', format: 'qcow2' });
    expect(JSON.stringify(log)).toContain('BLOCK_JOB_READY');
    expect(JSON.stringify(log.at(-1))).toContain('Images are identical.');
  }, 90_000);

  it('raw disk, sync=full, the ready job cancelled: holes go as zeroes, the destination equals the source', async () => {
    const log = await play({ source: 'src.raw', format: 'raw', sync: 'full', firstCopy: 4 << 20, end: 'cancel' }, { image: 'dst.raw', format: 'raw' });
    expect(JSON.stringify(log.at(-1))).toContain('Images are identical.');
  }, 90_000);

  it('qcow2 disk with a backing file, sync=top onto an overlay over the same base (--copy-storage-inc)', async () => {
    const log = await play({ source: 'top.qcow2', format: 'qcow2', sync: 'top', firstCopy: 64 << 10, end: 'cancel' }, { image: 'd-top.qcow2', format: 'qcow2' });
    expect(JSON.stringify(log.at(-1))).toContain('Images are identical.');
  }, 90_000);

  it("Proxmox: drive-mirror to an nbd: URI with format nbd, mode existing; the names QEMU refuses and the ones it opens", async () => {
    const log = await compareSessions(setup({ image: 'dst.raw', format: 'raw' }), proxmox(), withoutHostLayout, destination('src.raw', 'dst.raw'));
    expect(JSON.stringify(log)).toContain('No valid URL specified');
    expect(JSON.stringify(log.at(-1))).toContain('Images are identical.');
  }, 90_000);

  it('raw disk, write-blocking (synchronous writes), job-complete pivots the guest onto the remote copy', async () => {
    const log = await play(
      { source: 'src.raw', format: 'raw', sync: 'full', copyMode: 'write-blocking', firstCopy: 4 << 20, end: 'complete' },
      { image: 'dst.qcow2', format: 'qcow2' },
    );
    // The guest's last write went to the destination only.
    expect(JSON.stringify(log.at(-1))).toContain('Content mismatch at offset 2097152!');
  }, 90_000);
});
