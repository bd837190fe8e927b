/**
 * Active block-commit (a mirror job of type commit) played on
 * qemu-storage-daemon and on blockemu with the same 3-deep chain
 * (test/helpers/chain-session.ts) and the same session: guest writes
 * through an NBD export of the layer committed, READY, job-complete
 * putting base in the top's place, a cancel once ready (no pivot) and
 * before, a middle layer with a writer, the verbs of a ready job, error
 * policies, refusals. Replies, events and queries must be equal, then
 * what qemu-img says of the images and whether they read as expected.
 *
 * The images' actual-size is left out of the queries: when the host
 * blocks of a qcow2 file get written differs by a block now and then
 * under load (qemu-img map and check of the files after quit are
 * compared exactly).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareChain, explicitChain, imagesReport, nodesSummary, nodesWithout, type Step, without } from '../helpers/chain-session.js';
import { qemu, qemuImg, qemuIo, run } from '../helpers/qemu.js';
import { compareSessions, file, nbdWrite } from '../helpers/qmp-session.js';

/** A writable NBD export of `node` (named after it) on `${DIR}/nbd.sock`: the guest. */
const exportLayer = (node: string): Step[] => [
  ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
  ['block-export-add', { type: 'nbd', id: 'e', 'node-name': node, writable: true }],
];

/** `expected.raw`: the raw view `from` with the guest's writes (qemu-io commands) applied. */
const expectedView = (from: string, ...writes: string[]) => async (dir: string) => {
  const path = join(dir, 'expected.raw');
  const copied = await run('cp', [join(dir, from), path]);
  const io = await run('qemu-io', ['-f', 'raw', ...writes.flatMap((w) => ['-c', w]), path]);
  return { cp: copied.code, qemuIo: io.code };
};

/** small.qcow2 (512 KiB, 1s at [0, 256k)) under big.qcow2 (1 MiB, 4s at [384k, 768k)), and the view through big. */
async function growingChain(dir: string): Promise<void> {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'small.qcow2'), '512K'));
  await ok(qemuIo('-c', 'write -q -P 1 0 256k', join(dir, 'small.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'small.qcow2', '-F', 'qcow2', join(dir, 'big.qcow2'), '1M'));
  await ok(qemuIo('-c', 'write -q -P 4 384k 384k', join(dir, 'big.qcow2')));
  await ok(qemuImg('convert', '-O', 'raw', join(dir, 'big.qcow2'), join(dir, 'big-view.raw')));
}

const nodes = nodesWithout('actual-size');
/** The nodes with their backing chains as the graph has them (backing-image). */
const chains = without(['query-named-block-nodes'], 'actual-size');
const images = ['top.qcow2', 'mid.qcow2', 'base.qcow2'];

describe.skipIf(!qemu.available || !qemu.storageDaemon)('block-commit of the active layer, as qemu-storage-daemon runs it', () => {
  it('the active layer into the base with guest writes before and after ready; job-complete puts base in its place', async () => {
    await compareChain(
      [
        ...explicitChain(),
        ...exportLayer('top'),
        ['block-commit', { 'job-id': 'c', device: 'top', speed: 1 }],
        // [128k, 384k) is the first run of dirty clusters; the rate limit holds the job after it.
        { started: 'c', offset: 262144 },
        ['query-block-jobs'],
        nodes,
        { sh: nbdWrite('top', 'write -P 9 0 64k') },
        ['block-job-set-speed', { device: 'c', speed: 0 }],
        { waitJob: 'c', status: 'ready' },
        ['query-block-jobs'],
        { sh: nbdWrite('top', 'write -P 8 700k 64k') },
        ['job-complete', { id: 'c' }],
        { waitJob: 'c' },
        ['query-block-exports'],
        chains,
        // The guest now writes base.
        { sh: nbdWrite('top', 'write -P 7 900k 4k') },
        { sh: expectedView('top-view.raw', 'write -P 9 0 64k', 'write -P 8 700k 64k', 'write -P 7 900k 4k') },
      ],
      imagesReport(images, { 'base.qcow2': 'expected.raw' }),
    );
  }, 60_000);

  it('through a filter above the chain: after the pivot the committed layer, which only the filter used, is gone (iotest 040 TestCommitWithFilters)', async () => {
    const layer = (name: string, backing?: Record<string, unknown>) => ({ 'node-name': name, driver: 'qcow2', file: file(`${name}.qcow2`), ...(backing ? { backing } : {}) });
    await compareChain(
      [
        ['object-add', { 'qom-type': 'throttle-group', id: 'tg' }],
        ['blockdev-add', { 'node-name': 'top-filter', driver: 'throttle', 'throttle-group': 'tg', file: layer('top', layer('mid', layer('base'))) }],
        ['block-commit', { 'job-id': 'c', device: 'top-filter', 'top-node': 'top', 'base-node': 'mid' }],
        { waitJob: 'c', status: 'ready' },
        ['job-complete', { id: 'c' }],
        { waitJob: 'c' },
        ['query-block-jobs'],
        nodesSummary,
      ],
      imagesReport(images),
    );
  }, 60_000);

  it('cancelled once ready it completes without the pivot: the chain stays, base holds what top held; manual finalize and dismiss', async () => {
    await compareChain(
      [
        ...explicitChain(),
        ...exportLayer('top'),
        ['block-commit', { 'job-id': 'c', device: 'top', 'filter-node-name': 'mt', 'auto-finalize': false, 'auto-dismiss': false }],
        { waitJob: 'c', status: 'ready' },
        nodes,
        { sh: nbdWrite('top', 'write -P 9 0 64k') },
        ['block-job-cancel', { device: 'c' }],
        { waitJob: 'c', status: 'pending' },
        ['query-block-jobs'],
        ['job-finalize', { id: 'c' }],
        { waitJob: 'c', status: 'concluded' },
        ['query-block-jobs'],
        ['job-dismiss', { id: 'c' }],
        ['query-block-exports'],
        // Base stays writable after the job, as QEMU leaves it.
        chains,
        { sh: expectedView('top-view.raw', 'write -P 9 0 64k') },
      ],
      imagesReport(images, { 'base.qcow2': 'expected.raw', 'top.qcow2': 'expected.raw' }),
    );
  }, 60_000);

  it('cancelled before ready it is cancelled: the chain stays and thaws, and a second commit into mid completes', async () => {
    await compareChain(
      [
        ...explicitChain(),
        ['block-commit', { 'job-id': 'c', device: 'top', speed: 1 }],
        { started: 'c', offset: 262144 },
        ['job-complete', { id: 'c' }],
        ['block-job-cancel', { device: 'c' }],
        { waitJob: 'c' },
        nodes,
        ['block-commit', { 'job-id': 'c', device: 'top', 'base-node': 'mid' }],
        { waitJob: 'c', status: 'ready' },
        ['block-job-complete', { device: 'c' }],
        { waitJob: 'c' },
        chains,
        ['blockdev-del', { 'node-name': 'top' }],
      ],
      imagesReport(images, { 'top.qcow2': 'top-view.raw', 'mid.qcow2': 'top-view.raw' }),
    );
  }, 60_000);

  it("a middle layer with a writer is committed actively: 'backing-file' refused, top's backing becomes base", async () => {
    await compareChain(
      [
        ...explicitChain({ midWritable: true }),
        ...exportLayer('mid'),
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'backing-file': 'base.qcow2' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid' }],
        { waitJob: 'c', status: 'ready' },
        nodes,
        { sh: nbdWrite('mid', 'write -P 9 448k 64k') },
        ['job-complete', { id: 'c' }],
        { waitJob: 'c' },
        ['query-block-exports'],
        chains,
        { sh: expectedView('mid-view.raw', 'write -P 9 448k 64k') },
      ],
      imagesReport(images, { 'base.qcow2': 'expected.raw' }),
    );
  }, 60_000);

  it('verbs of a ready job: paused it is in standby and may be completed; resumed it completes', async () => {
    await compareChain(
      [
        ...explicitChain(),
        ['block-commit', { 'job-id': 'c', device: 'top', 'auto-finalize': false }],
        { waitJob: 'c', status: 'ready' },
        ['block-job-pause', { device: 'c' }],
        { waitJob: 'c', status: 'standby' },
        ['query-block-jobs'],
        ['block-job-complete', { device: 'c' }],
        ['job-complete', { id: 'c' }],
        ['block-job-resume', { device: 'c' }],
        { waitJob: 'c', status: 'pending' },
        ['query-block-jobs'],
        ['job-finalize', { id: 'c' }],
        { waitJob: 'c' },
        nodes,
      ],
      imagesReport(images, { 'base.qcow2': 'top-view.raw' }),
    );
  }, 60_000);

  it("refusals in QEMU's order and words; a running active commit blocks the chain", async () => {
    await compareChain(
      [
        ...explicitChain(),
        ['block-commit', { device: 'top' }],
        ['block-commit', { 'job-id': '1c', device: 'top' }],
        ['block-commit', { 'job-id': 'c', device: 'top', speed: -1 }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'filter-node-name': 'mid' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'filter-node-name': '1x' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'top', 'base-node': 'top' }],
        ['block-commit', { 'job-id': 'c', device: 'top', 'backing-file': 'x' }],
        nodes,
        ['block-commit', { 'job-id': 'c', device: 'top', 'base-node': 'mid', speed: 1, 'filter-node-name': 'mt' }],
        { started: 'c', offset: 65536 },
        // While it runs no node of the chain is a root (the job holds the filter above top): no command may start on it.
        ['block-commit', { 'job-id': 'c2', device: 'top' }],
        ['block-commit', { 'job-id': 'c', device: 'mt' }],
        ['block-commit', { 'job-id': 'c2', device: 'mt', 'top-node': 'mid' }],
        ['block-stream', { 'job-id': 's', device: 'mt' }],
        ['blockdev-del', { 'node-name': 'mid' }],
        ['blockdev-del', { 'node-name': 'mt' }],
        ['blockdev-mirror', { 'job-id': 'm', device: 'mt', target: 'base', sync: 'full' }],
        nodes,
        ['block-job-cancel', { device: 'c', force: true }],
        { waitJob: 'c' },
        // A copy-on-read filter with a bottom freezes top's backing link: the commit's chain cannot be frozen.
        ['blockdev-add', { driver: 'copy-on-read', 'node-name': 'cor', file: 'top', bottom: 'mid' }],
        ['block-commit', { 'job-id': 'c', device: 'cor' }],
        ['blockdev-del', { 'node-name': 'cor' }],
        nodes,
      ],
      imagesReport(images, { 'top.qcow2': 'top-view.raw' }),
    );
  }, 60_000);

  it('a base smaller than the top grows to its size; the chain opened from the image headers (implicit nodes)', async () => {
    await compareSessions(
      growingChain,
      [
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'big', file: file('big.qcow2') }],
        ['block-commit', { 'job-id': 'c', device: 'big', base: '${DIR}/small.qcow2' }],
        { waitJob: 'c', status: 'ready' },
        nodes,
        ['job-complete', { id: 'c' }],
        { waitJob: 'c' },
        chains,
      ],
      (l) => l,
      imagesReport(['big.qcow2', 'small.qcow2'], { 'small.qcow2': 'big-view.raw' }),
    );
  }, 60_000);

  // top into mid: one cluster, [256k, 320k), to copy — one request either way.
  for (const [name, layer, policy, rule] of [
    ['ENOSPC writing the base stopping the job (enospc); resumed it gets ready', 'mid', 'enospc', { event: 'write_aio', errno: 28, once: true }],
    ['ENOSPC writing the base reported: the job fails, the chain stays', 'mid', 'report', { event: 'write_aio', errno: 28, once: true }],
    ['a read error of the top ignored: the cluster is copied again', 'top', 'ignore', { event: 'read_aio', errno: 5, once: true }],
  ] as const) {
    it(`on-error: ${name}`, async () => {
      const stops = policy === 'enospc';
      const fails = policy === 'report';
      await compareChain(
        [
          ...explicitChain({ failing: { layer, rule } }),
          ['block-commit', { 'job-id': 'c', device: 'top', 'base-node': 'mid', 'on-error': policy, 'auto-dismiss': false }],
          { waitJob: 'c', event: 'BLOCK_JOB_ERROR' },
          ...(stops ? ([{ waitJob: 'c', status: 'paused' }, ['query-block-jobs'], ['block-job-resume', { device: 'c' }]] as Step[]) : []),
          ...(fails ? [] : ([{ waitJob: 'c', status: 'ready' }, ['query-block-jobs'], ['job-complete', { id: 'c' }]] as Step[])),
          { waitJob: 'c', status: 'concluded' },
          ['query-block-jobs'],
          nodesSummary,
          ['job-dismiss', { id: 'c' }],
        ],
        imagesReport(['top.qcow2', 'mid.qcow2'], fails ? { 'top.qcow2': 'top-view.raw' } : { 'mid.qcow2': 'top-view.raw' }),
      );
    }, 60_000);
  }
});
