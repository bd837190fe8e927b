/**
 * Mirror jobs played on qemu-storage-daemon and on blockemu with the same
 * images and the same QMP session: libvirt's block copy with its pivot,
 * Nova's copy that is cancelled once ready (no pivot), a forced cancel
 * before ready, guest writes through an NBD export of the source during
 * the job (background and write-blocking), sync=top onto a target with
 * the source's backing file, drive-mirror creating its target, and the
 * refusals of blockdev-mirror's checks. Replies, events (READY included),
 * query-named-block-nodes and what qemu-img reads of the results must be
 * equal.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemu, qemuImg, qemuIo, run } from '../helpers/qemu.js';
import { compareSessions, contents, file, nbdWrite, sameImages as same, type Step } from '../helpers/qmp-session.js';

/** src (4 MiB: data, a zero cluster, more data) and an empty target of its size; small (2 MiB); base <- top for sync=top, with t-top naming base. */
async function images(dir: string): Promise<void> {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'src.qcow2'), '4M'));
  await ok(qemuIo('-c', 'write -q -P 1 0 1M', '-c', 'write -q -z 2M 64k', '-c', 'write -q -P 2 3M 128k', join(dir, 'src.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'tgt.qcow2'), '4M'));
  await ok(qemuImg('create', '-q', '-f', 'raw', join(dir, 'tgt.raw'), '4M'));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'small.qcow2'), '2M'));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '4M'));
  await ok(qemuIo('-c', 'write -q -P 5 0 2M', join(dir, 'base.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')));
  await ok(qemuIo('-c', 'write -q -P 6 1M 64k', join(dir, 'top.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 't-top.qcow2')));
}

/**
 * Concurrent copies land in the target in whatever order they finish, in
 * QEMU too (two runs of the same session differ): where the target's
 * clusters sit in its file, and so how much of the file is allocated at a
 * given moment, is left out.
 */
const withoutHostLayout = (log: unknown[]): unknown[] => JSON.parse(JSON.stringify(log, (k, v: unknown) => (k === 'actual-size' ? undefined : v)));
const compare = (steps: readonly Step[]) => compareSessions(images, steps, withoutHostLayout);

const addSrcTgt: Step[] = [
  ['blockdev-add', { driver: 'qcow2', 'node-name': 'src', file: file('src.qcow2') }],
  ['blockdev-add', { driver: 'qcow2', 'node-name': 'tgt', file: file('tgt.qcow2') }],
];
const exportSrc: Step[] = [
  ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
  ['block-export-add', { type: 'nbd', id: 'e', 'node-name': 'src', writable: true }],
];

describe.skipIf(!qemu.available || !qemu.storageDaemon)('blockdev-mirror and drive-mirror, as qemu-storage-daemon runs them', () => {
  it('a drain reaches a ready mirror too: a transaction and the shutdown each make it report standby, then ready (job_pause_point; iotest 185)', async () => {
    await compare([
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'src', file: file('src.qcow2') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'tgt', file: file('tgt.qcow2') }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full' }],
      { waitJob: 'j', status: 'ready' },
      ['transaction', { actions: [{ type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'b' } }] }],
      // blockdev-add drains nothing: no events from it.
      ['blockdev-add', { driver: 'null-co', 'node-name': 'n' }],
      ['query-block-jobs'],
      // The daemon quits with the job ready: standby, ready, then the cancel's events.
    ]);
  }, 60_000);

  it('drive-mirror mode=existing opens the target image\'s own backing chain when it completes: after the pivot the export reads the backing file through it (iotest 156)', async () => {
    const readsAt = (pattern: number, offset: string) => async (dir: string) => {
      const r = await run('qemu-io', ['-r', '-f', 'raw', '-c', `read -P ${pattern} ${offset} 64k`, `nbd+unix:///top?socket=${join(dir, 'nbd.sock')}`]);
      return { code: r.code, err: r.stderr, verified: !r.stdout.includes('Pattern verification failed') };
    };
    await compare([
      ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
      ['block-export-add', { type: 'nbd', id: 'e', 'node-name': 'top' }],
      ['drive-mirror', { 'job-id': 'j', device: 'top', target: '${DIR}/t-top.qcow2', format: 'qcow2', mode: 'existing', sync: 'top' }],
      { waitJob: 'j', status: 'ready' },
      ['job-complete', { id: 'j' }],
      { waitJob: 'j' },
      { sh: readsAt(5, '0') },
      { sh: readsAt(6, '1M') },
      ['query-named-block-nodes'],
    ]);
  }, 60_000);

  it('drive-mirror mode=existing: a target whose backing file cannot open fails the job with EINVAL when it ends (mirror_exit_common)', async () => {
    const missingBacking = async (dir: string) => {
      await images(dir);
      expect((await qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'missing.qcow2', '-F', 'qcow2', join(dir, 'tm.qcow2'), '4M')).stderr).toBe('');
    };
    await compareSessions(missingBacking, [
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
      ['drive-mirror', { 'job-id': 'j', device: 'top', target: '${DIR}/tm.qcow2', format: 'qcow2', mode: 'existing', sync: 'top' }],
      { waitJob: 'j', status: 'ready' },
      ['job-complete', { id: 'j' }],
      { waitJob: 'j' },
      ['query-named-block-nodes', { flat: true }],
    ], withoutHostLayout);
  }, 60_000);

  it('mode=existing onto a target with larger clusters and a backing file it was not opened with: copies cover whole target clusters, so the part from the backing file is not left as zeroes (mirror_cow_align, iotest 041)', async () => {
    const bigClusters = async (dir: string) => {
      await images(dir);
      // The top holds 64 KiB at 1M+192K; its 128 KiB target cluster also covers 1M+128K..1M+192K, which only base holds.
      expect((await qemuIo('-c', 'write -q -P 7 1216k 64k', join(dir, 'top.qcow2'))).stderr).toBe('');
      expect((await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=131072', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'big.qcow2'))).stderr).toBe('');
    };
    const log = await compareSessions(bigClusters, [
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
      ['drive-mirror', { 'job-id': 'j', device: 'top', target: '${DIR}/big.qcow2', format: 'qcow2', mode: 'existing', sync: 'top' }],
      { waitJob: 'j', status: 'ready' },
      ['job-complete', { id: 'j' }],
      { waitJob: 'j' },
      { sh: same('top.qcow2', 'big.qcow2') },
      { sh: contents('big.qcow2') },
    ], withoutHostLayout);
    expect(log).toContain('Images are identical.\n');
  }, 60_000);

  it('a target whose raw window is too small: writes past it fail with ENOSPC, which on-target-error=enospc pauses on; a reopen widens it (iotest 248)', async () => {
    const fullTarget = async (dir: string) => {
      await images(dir);
      // Every cluster of the target allocated, so the mirror's writes land in place, past the window (as in 248).
      expect((await qemuIo('-c', 'write -q 0 4M', join(dir, 'tgt.qcow2'))).stderr).toBe('');
    };
    await compareSessions(fullTarget, [
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'src', file: file('src.qcow2') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'tgt', file: { driver: 'raw', size: 2097152, file: file('tgt.qcow2') } }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', 'on-target-error': 'enospc' }],
      { waitJob: 'j', status: 'paused' },
      ['blockdev-reopen', { options: [{ driver: 'qcow2', 'node-name': 'tgt', file: { driver: 'raw', file: file('tgt.qcow2') } }] }],
      ['block-job-resume', { device: 'j' }],
      { waitJob: 'j', status: 'ready' },
      ['block-job-cancel', { device: 'j' }],
      { waitJob: 'j' },
    ], withoutHostLayout);
  }, 60_000);

  it("libvirt's block copy: ready, a guest write copied again, job-complete pivots the export onto the target", async () => {
    const log = await compare([
      ...addSrcTgt,
      ...exportSrc,
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full' }],
      { waitJob: 'j', status: 'ready' },
      ['query-block-jobs'],
      ['query-named-block-nodes', { flat: true }],
      { sh: nbdWrite('src', 'write -P 9 3M 64k') },
      ['job-complete', { id: 'j' }],
      { waitJob: 'j' },
      ['query-block-exports'],
      ['query-named-block-nodes'],
      { sh: same('src.qcow2', 'tgt.qcow2') },
      { sh: contents('tgt.qcow2') },
    ]);
    expect(JSON.stringify(log)).toContain('BLOCK_JOB_READY');
    expect(log).toContain('Images are identical.\n');
  }, 60_000);

  it("Nova's copy: block-job-cancel of a ready job completes without a pivot", async () => {
    await compare([
      ...addSrcTgt,
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', 'auto-finalize': false, 'auto-dismiss': false }],
      { waitJob: 'j', status: 'ready' },
      ['block-job-cancel', { device: 'j' }],
      { waitJob: 'j', status: 'pending' },
      ['query-block-jobs'],
      ['block-job-complete', { device: 'j' }],
      ['job-dismiss', { id: 'j' }],
      ['job-finalize', { id: 'j' }],
      { waitJob: 'j', status: 'concluded' },
      ['job-dismiss', { id: 'j' }],
      ['query-named-block-nodes', { flat: true }],
      { sh: same('src.qcow2', 'tgt.qcow2') },
    ]);
  }, 60_000);

  it('verbs of a ready job: paused it is in standby and may be completed; resumed it completes; a cancel then is forced', async () => {
    await compare([
      ...addSrcTgt,
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', 'auto-finalize': false }],
      { waitJob: 'j', status: 'ready' },
      ['block-job-pause', { device: 'j' }],
      { waitJob: 'j', status: 'standby' },
      ['query-block-jobs'],
      ['block-job-complete', { device: 'j' }],
      ['block-job-cancel', { device: 'j' }],
      ['block-job-resume', { device: 'j' }],
      { waitJob: 'j', status: 'pending' },
      ['block-job-cancel', { device: 'j' }],
      { waitJob: 'j' },
      ['query-named-block-nodes', { flat: true }],
    ]);
  }, 60_000);

  it('a cancel before ready is forced: cancelled, the source untouched and in place', async () => {
    await compare([
      ...addSrcTgt,
      // One byte a second: everything is sent at once, then the job waits on its rate limit.
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', speed: 1 }],
      ['job-complete', { id: 'j' }],
      ['block-job-cancel', { device: 'j' }],
      { waitJob: 'j' },
      ['query-named-block-nodes', { flat: true }],
      { sh: contents('src.qcow2') },
    ]);
  }, 60_000);

  it('write-blocking: a guest write reaches the target before it completes; ready to pivot at once', async () => {
    await compare([
      ...addSrcTgt,
      ...exportSrc,
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', 'copy-mode': 'write-blocking', 'filter-node-name': 'mt' }],
      { waitJob: 'j', status: 'ready' },
      { sh: nbdWrite('src', 'write -P 7 64k 128k') },
      ['query-block-jobs'],
      { sh: same('src.qcow2', 'tgt.qcow2') },
      ['query-named-block-nodes', { flat: true }],
      ['block-job-complete', { device: 'j' }],
      { waitJob: 'j' },
      ['query-block-exports'],
    ]);
  }, 60_000);

  it("sync=top copies the top layer onto a target sharing the source's backing file; drive-mirror creates its target", async () => {
    await compare([
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'tt', file: file('t-top.qcow2') }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'top', target: 'tt', sync: 'top' }],
      { waitJob: 'j', status: 'ready' },
      ['block-job-complete', { device: 'j' }],
      { waitJob: 'j' },
      { sh: contents('t-top.qcow2') },
      ['drive-mirror', { 'job-id': 'd', device: 'tt', target: '${DIR}/dm.qcow2', sync: 'top', 'node-name': 'dm' }],
      { waitJob: 'd', status: 'ready' },
      ['query-named-block-nodes'],
      ['job-cancel', { id: 'd' }],
      { waitJob: 'd' },
      { sh: contents('dm.qcow2') },
      ['drive-mirror', { 'job-id': 'd2', device: 'tt', target: '${DIR}/dm.raw', sync: 'top', format: 'raw' }],
      ['drive-mirror', { 'job-id': 'd3', device: 'tt', target: '${DIR}/full.qcow2', sync: 'full', 'node-name': 'full' }],
      { waitJob: 'd3', status: 'ready' },
      ['block-job-complete', { device: 'd3' }],
      { waitJob: 'd3' },
      ['query-named-block-nodes', { flat: true }],
      { sh: same('top.qcow2', 'full.qcow2') },
    ]);
  }, 60_000);

  it("refusals in QEMU's words and order; a size mismatch fails the started job", async () => {
    await compare([
      ...addSrcTgt,
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'small', file: file('small.qcow2') }],
      ['blockdev-mirror', { device: 'src', target: 'tgt', sync: 'full' }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'nope', target: 'tgt', sync: 'full' }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'nope', sync: 'full' }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'src', sync: 'full' }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'bitmap' }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', granularity: 1000 }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', granularity: 256 }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', 'buf-size': -1 }],
      ['blockdev-mirror', { 'job-id': 's', device: 'src', target: 'tgt', sync: 'full', speed: -1 }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', replaces: 'nope' }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', replaces: 'small' }],
      ['blockdev-mirror', { 'job-id': '1j', device: 'src', target: 'tgt', sync: 'full' }],
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', 'filter-node-name': '#x' }],
      ['blockdev-mirror', { 'job-id': 'm', device: 'src', target: 'small', sync: 'full' }],
      { waitJob: 'm' },
      ['blockdev-mirror', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', speed: 1 }],
      // Its first copy (the whole 4 MiB, before the speed holds it) is done when the refusals below come, however slow the machine.
      { started: 'j', offset: 4194304 },
      ['blockdev-mirror', { 'job-id': 'k', device: 'src', target: 'small', sync: 'full' }],
      ['blockdev-mirror', { 'job-id': 'k', device: 'small', target: 'tgt', sync: 'full' }],
      ['blockdev-del', { 'node-name': 'tgt' }],
      ['block-job-cancel', { device: 'j', force: true }],
      { waitJob: 'j' },
      ['query-block-jobs'],
    ]);
  }, 60_000);
});
