/**
 * block-commit below the active layer, played on qemu-storage-daemon and
 * on blockemu with the same 3-deep chain (test/helpers/chain-session.ts):
 * replies, job events and queries equal while the job runs (a speed of 1
 * byte/s holds it after its first copy), then what qemu-img says of the
 * images — backing file strings, check, allocation — and the guest view:
 * the top reads as before, the base as the middle layer did.
 *
 * Committing the active layer (a mirror job in QEMU) is played in
 * commit-active.test.ts.
 */
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { compareChain, explicitChain, file, imagesReport, nodesSummary, nodesWithout, type Step } from '../helpers/chain-session.js';
import { qemu, qemuImg } from '../helpers/qemu.js';

const report = imagesReport(['top.qcow2', 'base.qcow2'], { 'top.qcow2': 'top-view.raw', 'base.qcow2': 'mid-view.raw' });

describe.skipIf(!qemu.available || !qemu.storageDaemon)('block-commit, as qemu-storage-daemon runs it', () => {
  it('the middle layer into the base: commit_top and a writable base while it runs, pause and resume, manual finalize and dismiss', async () => {
    await compareChain(
      [
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2') }],
        ['block-commit', { 'job-id': 'c', device: 'top', top: '${DIR}/mid.qcow2', speed: 1, 'auto-finalize': false, 'auto-dismiss': false }],
        // mid holds [128k, 384k): the first copy, after a step over [0, 128k) that copies nothing.
        { started: 'c', offset: 393216 },
        ['query-block-jobs'],
        ['query-jobs'],
        ['query-named-block-nodes'],
        ['block-job-pause', { device: 'c' }],
        { waitJob: 'c', status: 'paused' },
        ['query-block-jobs'],
        ['block-job-resume', { device: 'c' }],
        ['block-job-set-speed', { device: 'c', speed: 0 }],
        { waitJob: 'c', status: 'pending' },
        ['query-named-block-nodes', { flat: true }],
        ['job-finalize', { id: 'c' }],
        { waitJob: 'c', status: 'concluded' },
        ['query-block-jobs'],
        ['query-named-block-nodes', { flat: true }],
        ['job-dismiss', { id: 'c' }],
        ['query-named-block-nodes'],
      ],
      report,
    );
  }, 60_000);

  it('named nodes: a named filter, backing-file, the range busy; cancelled the chain comes back, committed again it goes', async () => {
    await compareChain(
      [
        ...explicitChain(),
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'base-node': 'base', 'filter-node-name': 'ct', speed: 1 }],
        { started: 'c', offset: 393216 },
        ['query-named-block-nodes', { flat: true }],
        // Paused, so that the snapshot's drains (which end a running job's sleep) leave it where it is.
        ['block-job-pause', { device: 'c' }],
        { waitJob: 'c', status: 'paused' },
        ['blockdev-del', { 'node-name': 'base' }],
        ['blockdev-del', { 'node-name': 'mid' }],
        ['blockdev-snapshot-sync', { 'node-name': 'base', 'snapshot-file': '${DIR}/s.qcow2', 'snapshot-node-name': 's' }],
        ['block-stream', { 'job-id': 's', device: 'top' }],
        ['block-commit', { 'job-id': 'c2', device: 'top', 'top-node': 'mid' }],
        ['block-job-cancel', { device: 'c', force: true }],
        { waitJob: 'c' },
        ['query-named-block-nodes', { flat: true }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'backing-file': 'base.qcow2' }],
        { waitJob: 'c' },
        // Under load, blockemu's base file sometimes holds one 4 KiB host block more right then (qsd's never
        // differs); the images' allocation as qemu-img maps them after quit is compared exactly.
        nodesWithout('actual-size'),
        ['blockdev-del', { 'node-name': 'mid' }],
      ],
      report,
    );
  }, 60_000);

  it('top= as an absolute file name finds the layer below an image that is opened through blkdebug, whose own name is a protocol name (iotest 040 TestSetSpeed)', async () => {
    await compareChain(
      [
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: { driver: 'blkdebug', image: file('top.qcow2') } }],
        ['block-commit', { 'job-id': 'c', device: 'top', top: '${DIR}/mid.qcow2' }],
        { waitJob: 'c' },
        ['block-commit', { 'job-id': 'd', device: 'top', top: '${DIR}/nope.qcow2' }],
        nodesSummary,
      ],
      imagesReport(['top.qcow2']),
    );
  }, 60_000);

  it("refusals in QEMU's order and words: the device, top and base, the same image, op blockers, frozen links, backing-file on the active layer", async () => {
    await compareChain(
      [
        ...explicitChain(),
        { sh: async (dir) => (await qemuImg('create', '-q', '-f', 'raw', join(dir, 'r.raw'), '1M')).stderr },
        ['blockdev-add', { driver: 'raw', 'node-name': 'r', file: file('r.raw') }],
        ['block-commit', { 'job-id': 'c', device: 'nope' }],
        ['block-commit', { 'job-id': 'c', device: 'mid' }],
        ['block-commit', { 'job-id': 'c', device: 'top-file' }],
        ['block-commit', { 'job-id': 'c', device: 'top', top: 'x', 'top-node': 'y' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'nope' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'r' }],
        ['block-commit', { 'job-id': 'c', device: 'top', top: 'nope.qcow2' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', base: 'x', 'base-node': 'y' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'base-node': 'nope' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'base-node': 'top' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', base: 'nope.qcow2' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'base' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'base-node': 'mid' }],
        ['block-commit', { 'job-id': 'c', device: 'r' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'backing-file': 'x' }],
        ['block-commit', { device: 'top', 'top-node': 'mid' }],
        ['block-commit', { 'job-id': '1c', device: 'top', 'top-node': 'mid' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', speed: -1 }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'filter-node-name': 'top' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'filter-node-name': '1x' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'backing-mask-protocol': true }],
        // A copy-on-read filter with a bottom freezes top's backing link: commit_top cannot go above mid.
        ['blockdev-add', { driver: 'copy-on-read', 'node-name': 'cor1', file: 'top', bottom: 'mid' }],
        ['block-commit', { 'job-id': 'c', device: 'cor1', 'top-node': 'mid' }],
        ['block-commit', { 'job-id': 'c', device: 'cor1', 'top-node': 'mid', 'base-node': 'base' }],
        ['blockdev-del', { 'node-name': 'cor1' }],
        ['query-named-block-nodes', { flat: true }],
      ],
      imagesReport(['top.qcow2', 'base.qcow2']),
    );
  }, 60_000);

  for (const [name, layer, policy, rule] of [
    ['a read error reported', 'mid', 'report', { event: 'read_aio', errno: 5 }],
    ['a read error ignored (tried again)', 'mid', 'ignore', { event: 'read_aio', errno: 5, once: true }],
    ['a read error stopping the job', 'mid', 'stop', { event: 'read_aio', errno: 5, once: true }],
    ['ENOSPC writing the base stopping the job (enospc)', 'base', 'enospc', { event: 'write_aio', errno: 28, once: true }],
    ['ENOSPC writing the base reported', 'base', 'report', { event: 'write_aio', errno: 28, once: true }],
  ] as const) {
    it(`on-error: ${name}`, async () => {
      const stops = policy === 'stop' || policy === 'enospc';
      await compareChain(
        [
          ...explicitChain({ failing: { layer, rule } }),
          ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'on-error': policy, 'auto-dismiss': false }],
          { waitJob: 'c', event: stops ? 'BLOCK_JOB_ERROR' : 'BLOCK_JOB_COMPLETED' },
          ...(stops ? ([{ waitJob: 'c', status: 'paused' }, ['query-block-jobs'], ['block-job-resume', { device: 'c' }]] as Step[]) : []),
          { waitJob: 'c', status: 'concluded' },
          ['query-block-jobs'],
          layer === 'base' ? nodesSummary : ['query-named-block-nodes', { flat: true }],
          ['job-dismiss', { id: 'c' }],
        ],
        imagesReport(['top.qcow2']),
      );
    }, 60_000);
  }
});
