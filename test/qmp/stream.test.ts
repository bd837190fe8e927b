/**
 * block-stream played on qemu-storage-daemon and on blockemu with the same
 * 3-deep chain (test/helpers/chain-session.ts): replies, job events and
 * queries equal while the job runs (a speed of 1 byte/s holds it after its
 * first copy), then what qemu-img says of the images — backing file
 * strings, check, allocation, and the guest view unchanged.
 *
 * qsd 7.2 crashes on query-named-block-nodes while a stream job is
 * concluded but not dismissed (the dropped copy-on-read filter has no
 * child left), so no session looks at the nodes then.
 */
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { compareChain, explicitChain, file, imagesReport, type Step } from '../helpers/chain-session.js';
import { qemu, qemuImg } from '../helpers/qemu.js';

const topReport = imagesReport(['top.qcow2'], { 'top.qcow2': 'top-view.raw' });

describe.skipIf(!qemu.available || !qemu.storageDaemon)('block-stream, as qemu-storage-daemon runs it', () => {
  it('the whole chain into the top: the filter while it runs, pause and resume, manual finalize and dismiss; the top keeps no backing file', async () => {
    await compareChain(
      [
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
        ['block-stream', { 'job-id': 's', device: 'top', speed: 1, 'auto-finalize': false, 'auto-dismiss': false }],
        // [0, 128k) is in base only: its copy is the first step.
        { started: 's', offset: 131072 },
        ['query-block-jobs'],
        ['query-jobs'],
        ['query-named-block-nodes'],
        ['block-job-pause', { device: 's' }],
        { waitJob: 's', status: 'paused' },
        ['query-block-jobs'],
        ['block-job-cancel', { device: 's' }],
        ['block-job-resume', { device: 's' }],
        ['block-job-set-speed', { device: 's', speed: 0 }],
        { waitJob: 's', status: 'pending' },
        ['query-named-block-nodes', { flat: true }],
        ['job-dismiss', { id: 's' }],
        ['job-finalize', { id: 's' }],
        { waitJob: 's', status: 'concluded' },
        ['query-block-jobs'],
        ['job-dismiss', { id: 's' }],
        ['query-named-block-nodes'],
      ],
      topReport,
    );
  }, 60_000);

  it('down to an intermediate base: a read-only top reopened for the job and after, a named filter, backing-file written, the nodes of the range busy', async () => {
    await compareChain(
      [
        ...explicitChain({ topReadOnly: true }),
        ['block-stream', { 'job-id': 's', device: 'top', 'base-node': 'base', 'backing-file': 'base.qcow2', 'filter-node-name': 'cor', speed: 1 }],
        // [0, 128k) is not in mid: the first copy is [128k, 256k).
        { started: 's', offset: 262144 },
        ['query-named-block-nodes', { flat: true }],
        ['query-block-jobs'],
        // Paused, so that the snapshot's drains (which end a running job's sleep) leave it where it is.
        ['block-job-pause', { device: 's' }],
        { waitJob: 's', status: 'paused' },
        ['block-stream', { 'job-id': 's2', device: 'mid', 'base-node': 'base' }],
        ['block-stream', { 'job-id': 's2', device: 'top' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid' }],
        ['blockdev-del', { 'node-name': 'mid' }],
        ['blockdev-del', { 'node-name': 'cor' }],
        ['blockdev-snapshot-sync', { 'node-name': 'top', 'snapshot-file': '${DIR}/snap.qcow2', 'snapshot-node-name': 'snap' }],
        ['block-job-set-speed', { device: 's', speed: 0 }],
        ['block-job-resume', { device: 's' }],
        { waitJob: 's' },
        ['query-named-block-nodes', { flat: true }],
        ['blockdev-del', { 'node-name': 'top' }],
        ['blockdev-del', { 'node-name': 'mid' }],
      ],
      topReport,
    );
  }, 60_000);

  it("bottom, and base as a backing file name: the base's own name written, the layers in between dropped", async () => {
    await compareChain(
      [
        ...explicitChain(),
        ['block-stream', { 'job-id': 's', device: 'top', bottom: 'mid' }],
        { waitJob: 's' },
        ['query-named-block-nodes', { flat: true }],
        ['blockdev-del', { 'node-name': 'top' }],
        ['blockdev-del', { 'node-name': 'mid' }],
        ['blockdev-del', { 'node-name': 'base' }],
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'top2', file: file('mid.qcow2') }],
        ['block-stream', { 'job-id': 's', device: 'top2', base: 'base.qcow2' }],
        { waitJob: 's' },
        ['query-named-block-nodes', { flat: true }],
      ],
      imagesReport(['top.qcow2', 'mid.qcow2'], { 'top.qcow2': 'top-view.raw', 'mid.qcow2': 'mid-view.raw' }),
    );
  }, 60_000);

  it("refusals in QEMU's order and words: arguments, nodes not in the chain, the same node, op blockers, frozen links; nothing to stream; cancel", async () => {
    await compareChain(
      [
        ...explicitChain(),
        { sh: async (dir) => (await qemuImg('create', '-q', '-f', 'raw', join(dir, 'r.raw'), '1M')).stderr },
        ['blockdev-add', { driver: 'raw', 'node-name': 'r', file: file('r.raw') }],
        ['block-stream', { 'job-id': 's', device: 'top', base: 'x', 'base-node': 'y' }],
        ['block-stream', { 'job-id': 's', device: 'top', base: 'x', bottom: 'y' }],
        ['block-stream', { 'job-id': 's', device: 'top', 'base-node': 'x', bottom: 'y' }],
        ['block-stream', { 'job-id': 's', device: 'nope' }],
        ['block-stream', { 'job-id': 's', device: 'top', base: 'nope.qcow2' }],
        ['block-stream', { 'job-id': 's', device: 'top', 'base-node': 'nope' }],
        ['block-stream', { 'job-id': 's', device: 'top', 'base-node': 'top' }],
        ['block-stream', { 'job-id': 's', device: 'mid', 'base-node': 'top' }],
        ['block-stream', { 'job-id': 's', device: 'top', 'base-node': 'r' }],
        ['block-stream', { 'job-id': 's', device: 'top', bottom: 'nope' }],
        ['block-stream', { 'job-id': 's', device: 'top', bottom: 'r' }],
        ['block-stream', { 'job-id': 's', device: 'top', 'backing-file': 'foo' }],
        ['block-stream', { device: 'top' }],
        ['block-stream', { 'job-id': '1x', device: 'top' }],
        ['block-stream', { 'job-id': 's', device: 'top', speed: -1 }],
        ['block-stream', { 'job-id': 's', device: 'top', 'filter-node-name': 'top' }],
        ['block-stream', { 'job-id': 's', device: 'top', 'filter-node-name': '1bad' }],
        ['block-stream', { 'job-id': 's', device: 'top', 'on-error': 'sometimes' }],
        // Nothing to stream: a raw node, the bottom of the chain.
        ['block-stream', { 'job-id': 'r', device: 'r' }],
        { waitJob: 'r' },
        ['block-stream', { 'job-id': 'b', device: 'base' }],
        { waitJob: 'b' },
        // The filter above a format node's file: the format's resize is not shared with the job's BlockBackend.
        ['block-stream', { 'job-id': 's', device: 'top-file' }],
        // A copy-on-read filter with a bottom freezes the chain down to it.
        ['blockdev-add', { driver: 'copy-on-read', 'node-name': 'cor1', file: 'top', bottom: 'nope' }],
        ['blockdev-add', { driver: 'copy-on-read', 'node-name': 'cor1', file: 'top', bottom: 'mid' }],
        ['blockdev-add', { driver: 'copy-on-read', 'node-name': 'cor2', file: 'cor1', bottom: 'cor1' }],
        ['block-stream', { 'job-id': 's', device: 'top' }],
        ['block-stream', { 'job-id': 's', device: 'mid' }],
        ['block-stream', { 'job-id': 's', device: 'cor1', 'base-node': 'base' }],
        ['block-stream', { 'job-id': 's', device: 'cor1', bottom: 'cor1' }],
        ['blockdev-snapshot-sync', { 'node-name': 'top', 'snapshot-file': '${DIR}/s.qcow2', 'snapshot-node-name': 'snap' }],
        ['query-named-block-nodes', { flat: true }],
        ['blockdev-del', { 'node-name': 'cor1' }],
        // Cancelled after its first copy: the chain stays as it was.
        ['block-stream', { 'job-id': 's', device: 'top', 'base-node': 'base', speed: 1 }],
        { started: 's', offset: 262144 },
        ['block-job-cancel', { device: 's' }],
        { waitJob: 's' },
        ['query-named-block-nodes', { flat: true }],
      ],
      topReport,
    );
  }, 60_000);

  for (const [policy, rule] of [
    ['report', { errno: 5 }],
    ['ignore', { errno: 5 }],
    ['stop', { errno: 5, once: true }],
    ['enospc', { errno: 28, once: true }],
  ] as const) {
    it(`on-error ${policy}: BLOCK_JOB_ERROR, the job's status and io-status, the chain after it`, async () => {
      await compareChain(
        [
          ...explicitChain({ failing: { layer: 'mid', rule: { event: 'read_aio', ...rule } } }),
          ['block-stream', { 'job-id': 's', device: 'top', 'base-node': 'base', 'on-error': policy, 'auto-dismiss': false }],
          { waitJob: 's', event: policy === 'stop' || policy === 'enospc' ? 'BLOCK_JOB_ERROR' : 'BLOCK_JOB_COMPLETED' },
          ...(policy === 'stop' || policy === 'enospc' ? ([{ waitJob: 's', status: 'paused' }, ['query-block-jobs'], ['block-job-resume', { device: 's' }]] as Step[]) : []),
          { waitJob: 's', status: 'concluded' },
          ['query-block-jobs'],
          ['job-dismiss', { id: 's' }],
          ['query-named-block-nodes', { flat: true }],
        ],
        topReport,
      );
    }, 60_000);
  }
});
