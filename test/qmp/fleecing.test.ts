/**
 * QEMU 7.2's newer fleecing set-up played on qemu-storage-daemon and on
 * blockemu with the same images and session (as iotests image-fleecing
 * and copy-before-write play it in QEMU): a `copy-before-write` node the
 * user adds above the source becomes the guest's node (its NBD export
 * takes the guest's writes), a `snapshot-access` node over it is exported
 * for the fleecing reader. The guest overwrites; the fleecing export must
 * still read as the source did (qemu-io patterns, `qemu-img compare`
 * against a copy taken before the writes), while the source takes the
 * new data. Then discard through the fleecing export, a bitmap-limited
 * cbw, on-cbw-error with a target that fails (blkdebug) or is too slow
 * (throttle, cbw-timeout), a push backup out of the snapshot, what the
 * daemons refuse meanwhile, and the teardown. Replies, events, the node
 * queries (internal bitmaps and json: names included) and what QEMU's
 * tools read must be equal.
 *
 * The images' actual-size is left out of the node queries: when the host
 * blocks of a qcow2 file get written differs now and then under load.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { nodesWithout, without } from '../helpers/chain-session.js';
import { qemu, qemuImg, qemuIo, run } from '../helpers/qemu.js';
import { compareSessions, file, nbdWrite, play, type Step } from '../helpers/qmp-session.js';
import { OURS } from '../helpers/export-daemon.js';

/** image-fleecing's layout (64 MiB): data at four places, overwritten in part, left alone in part. */
const PATTERNS: Array<[string, string, string]> = [
  ['0x5d', '0', '64k'],
  ['0xd5', '1M', '64k'],
  ['0xdc', '32M', '64k'],
  ['0xcd', '0x3ff0000', '64k'],
];
const OVERWRITE: Array<[string, string, string]> = [
  ['0xab', '0', '64k'], // whole cluster
  ['0xad', '0x00f8000', '64k'], // half before 1M, half of its data
  ['0x1d', '0x2008000', '64k'], // the right half of 32M's data and beyond
  ['0xea', '0x3fe0000', '64k'], // the cluster before the last
];
const ZEROES: Array<[string, string, string]> = [
  ['0', '0x00f8000', '32k'],
  ['0', '0x2010000', '32k'],
  ['0', '0x3fe0000', '64k'],
];
const REMAINDER: Array<[string, string, string]> = [
  ['0xd5', '0x108000', '32k'],
  ['0xdc', '32M', '32k'],
  ['0xcd', '0x3ff0000', '64k'],
];
const reads = (list: Array<[string, string, string]>) => list.map(([p, o, l]) => `read -P ${p} ${o} ${l}`);
const writes = (list: Array<[string, string, string]>) => list.map(([p, o, l]) => `write -P ${p} ${o} ${l}`);

/** src.qcow2 with the patterns, empty temp images (qcow2 and raw), and a 32 MiB image for a size that does not fit. */
async function images(dir: string): Promise<void> {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'src.qcow2'), '64M'));
  await ok(qemuIo(...writes(PATTERNS).flatMap((w) => ['-c', w.replace('write', 'write -q')]), join(dir, 'src.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'tmp.qcow2'), '64M'));
  await ok(qemuImg('create', '-q', '-f', 'raw', join(dir, 'tmp.raw'), '64M'));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'tgt.qcow2'), '64M'));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'small.qcow2'), '32M'));
}

const compare = (steps: readonly Step[], after?: (dir: string) => Promise<unknown>) => compareSessions(images, steps, (l) => l, after);

const uri = (dir: string, name: string) => `nbd+unix:///${name}?socket=${join(dir, 'nbd.sock')}`;

/** qemu-io's lines without the timing ones (they differ every run). */
const untimed = (s: string) =>
  s
    .split('\n')
    .filter((l) => !l.includes(' ops; '))
    .join('\n');

/** qemu-io commands through the NBD export `name` (read-only with `ro`), one process: exit code and output. */
const io =
  (name: string, cmds: readonly string[], ro = false) =>
  async (dir: string) => {
    const r = await run('qemu-io', ['-f', 'raw', ...(ro ? ['-r'] : []), ...cmds.flatMap((c) => ['-c', c]), uri(dir, name)]);
    return { code: r.code, out: untimed(r.stdout + r.stderr) };
  };

/** What qemu-img map reads of an export (block status through NBD), or how it fails. */
const mapExport = (name: string) => async (dir: string) => {
  const r = await run('qemu-img', ['map', '--output=json', '-f', 'raw', uri(dir, name)]);
  return r.code === 0 ? JSON.parse(r.stdout) : { code: r.code, err: r.stderr };
};

/** `qemu-img compare` of an export with an image file. */
const sameAs = (name: string, image: string) => async (dir: string) => {
  const r = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', uri(dir, name), join(dir, image)]);
  return { code: r.code, out: r.stdout + r.stderr };
};

/** Waits until the export is gone (block-export-del only asks; the deletion follows, BLOCK_EXPORT_DELETED with it). */
const exportGone = (id: string): Step => ({
  look: async (c) => {
    for (let i = 0; i < 200; i++) {
      const list = await c.execute<Array<{ id: string }>>('query-block-exports');
      if (!list.some((e) => e.id === id)) return list.map((e) => e.id);
      await sleep(10);
    }
    throw new Error(`export ${id} is still there`);
  },
});

const nodes = nodesWithout('actual-size');
/**
 * The nodes without the lengths of files under qcow2 images either: after
 * a copy to a qcow2 target failed in part, blockemu's qcow2 has written
 * its new tables at another moment than QEMU's (see the README).
 */
const nodesAfterFailures: Step = {
  look: async (c) => {
    const list = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
    return list.map(({ image, ...n }) => {
      const { 'actual-size': _a, ...i } = image as Record<string, unknown>;
      if ((n['drv'] === 'file' || n['drv'] === 'blkdebug') && String(i['filename']).includes('.qcow2')) delete i['virtual-size'];
      return { ...n, image: i };
    });
  },
};

/** Waits until the copies block-copy still has under way are done: the source's copy bitmap shows `count` bytes left. */
const copiesLeft = (count: number): Step => ({
  look: async (c) => {
    let now: unknown;
    for (let i = 0; i < 500; i++) {
      const src = (await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true })).find((n) => n['node-name'] === 'src')!;
      now = (src['dirty-bitmaps'] as Array<Record<string, unknown>>).find((b) => b['name'] === undefined)!['count'];
      if (now === count) return count;
      await sleep(20);
    }
    throw new Error(`the copy bitmap never came down to ${count} (it is at ${String(now)})`);
  },
});
const server: Step = ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }];
const addSrc: Step = ['blockdev-add', { driver: 'qcow2', 'node-name': 'src', file: file('src.qcow2', 'src-file') }];
const addTmp: Step = ['blockdev-add', { driver: 'qcow2', 'node-name': 'tmp', file: file('tmp.qcow2', 'tmp-file') }];
/** The guest's export on the cbw node (named after it), and the fleecing reader's on the snapshot-access node. */
const guestOnCbw: Step = ['block-export-add', { type: 'nbd', id: 'guest', 'node-name': 'cbw', writable: true }];
const fleeceExport = (writable = false): Step => ['block-export-add', { type: 'nbd', id: 'fleece', 'node-name': 'acc', writable }];

/** After the daemon quit: what the source reads as (the guest's writes landed), and whether the images are clean. */
const confirmWrites = (cmds: readonly string[], images: readonly string[]) => async (dir: string) => {
  const r = await run('qemu-io', ['-r', '-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), join(dir, 'src.qcow2')]);
  const checks: Record<string, number> = {};
  for (const i of images) checks[i] = (await run('qemu-img', ['check', '-q', join(dir, i)])).code;
  return { code: r.code, out: untimed(r.stdout + r.stderr), checks };
};

describe.skipIf(!qemu.available || !qemu.storageDaemon)('copy-before-write and snapshot-access nodes, as qemu-storage-daemon runs them', () => {
  it('image-fleecing: cbw above the source as the guest node, snapshot-access exported; guest overwrites leave the point in time readable; teardown in order', async () => {
    const log = await compare(
      [
        addSrc,
        addTmp,
        server,
        // The guest starts on the source itself and writes before any snapshot.
        ['block-export-add', { type: 'nbd', id: 'guest', 'node-name': 'src', writable: true }],
        { sh: nbdWrite('src', 'write -P 0x77 8M 64k') },
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp' }],
        // The cbw may not get a user while the source has a writer it would not see.
        ['block-export-add', { type: 'nbd', id: 'guest2', 'node-name': 'cbw', writable: true }],
        // The guest moves to the cbw node (qom-set drive in qemu-system): the point in time is now.
        ['block-export-del', { id: 'guest' }],
        exportGone('guest'),
        { sh: async (dir) => (await run('cp', [join(dir, 'src.qcow2'), join(dir, 'orig.qcow2')])).code },
        guestOnCbw,
        // Nobody writes the source behind the cbw's back now; reading it is fine.
        ['block-export-add', { type: 'nbd', id: 'w', 'node-name': 'src', writable: true }],
        ['block-export-add', { type: 'nbd', id: 'r', 'node-name': 'src' }],
        ['block-export-del', { id: 'r' }],
        exportGone('r'),
        ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw' }],
        fleeceExport(),
        nodes,
        { sh: io('acc', [...reads(PATTERNS), ...reads(ZEROES), 'read -P 0x77 8M 64k'], true) },
        // Before anything is copied (after, QEMU 7.2 answers wrongly: see the test of where blockemu differs).
        { sh: mapExport('acc') },
        { sh: io('cbw', writes(OVERWRITE)) },
        nodes,
        // The snapshot still reads as before the writes; the guest sees its writes.
        { sh: io('acc', [...reads(PATTERNS), ...reads(ZEROES)], true) },
        { sh: io('cbw', [...reads(OVERWRITE), ...reads(REMAINDER)], true) },
        { sh: sameAs('acc', 'orig.qcow2') },
        { sh: mapExport('cbw') },
        // In use: by the export, by the snapshot-access node, by the cbw.
        ['blockdev-del', { 'node-name': 'acc' }],
        ['blockdev-del', { 'node-name': 'cbw' }],
        ['blockdev-del', { 'node-name': 'tmp' }],
        ['blockdev-del', { 'node-name': 'src' }],
        ['blockdev-reopen', { options: [{ driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp' }] }],
        ['blockdev-reopen', { options: [{ driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw' }] }],
        // Teardown as image-fleecing does it: the reader's export, the snapshot-access node, the guest, the cbw, the temp.
        ['block-export-del', { id: 'fleece' }],
        exportGone('fleece'),
        ['blockdev-del', { 'node-name': 'acc' }],
        ['blockdev-del', { 'node-name': 'cbw' }],
        ['block-export-del', { id: 'guest' }],
        exportGone('guest'),
        ['blockdev-del', { 'node-name': 'cbw' }],
        ['blockdev-del', { 'node-name': 'tmp' }],
        nodes,
      ],
      confirmWrites([...reads(OVERWRITE), ...reads(REMAINDER), 'read -P 0x77 8M 64k'], ['src.qcow2', 'tmp.qcow2']),
    );
    const text = JSON.stringify(log);
    expect(text).toContain('Images are identical.');
    expect(text).not.toContain('Pattern verification failed');
  }, 90_000);

  it('discard through the snapshot-access export: dropped clusters fail to read, later guest writes there copy nothing; writes refused (temp as a raw file node)', async () => {
    const log = await compare(
      [
        addSrc,
        ['blockdev-add', { driver: 'file', 'node-name': 'tmp', filename: '${DIR}/tmp.raw' }],
        server,
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp' }],
        guestOnCbw,
        // Discard reaches the snapshot only with discard=unmap, as any discard reaches a node; exported writable to take it.
        ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw', discard: 'unmap' }],
        fleeceExport(true),
        ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'keep', file: 'cbw' }],
        ['block-export-add', { type: 'nbd', id: 'keep', 'node-name': 'keep', writable: true }],
        { sh: io('keep', ['discard 0 64k', 'read -P 0x5d 0 64k']) },
        { sh: io('acc', ['write -P 3 0 4k', 'write -z 0 4k', 'discard 1M 64k', 'read 1M 4k', 'read -P 0 0xf0000 64k', 'read 0xf8000 64k', 'discard 32M 64k', 'read -P 0x5d 0 64k']) },
        nodes,
        { sh: io('cbw', writes(OVERWRITE)) },
        nodes,
        { sh: io('acc', [...reads(PATTERNS), ...reads(ZEROES)], true) },
        { sh: mapExport('acc') },
        ['query-block-exports'],
        // What the refused writes and the discards leave in the statistics (the highest offset written, the file's discards).
        ['query-blockstats', { 'query-nodes': true }],
      ],
      async (dir) => (await run('qemu-img', ['map', '--output=json', '-f', 'raw', join(dir, 'tmp.raw')])).stdout,
    );
    expect(JSON.stringify(log)).toContain('Invalid argument');
  }, 90_000);

  it('a bitmap-limited cbw: only the bitmap\'s clusters are kept (taken once, at open); the others fail to read; its refusals', async () => {
    await compare(
      [
        addSrc,
        addTmp,
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'small', file: file('small.qcow2') }],
        ['block-dirty-bitmap-add', { node: 'src', name: 'b0' }],
        ['block-dirty-bitmap-add', { node: 'small', name: 'sb' }],
        ['block-dirty-bitmap-add', { node: 'src', name: 'g4k', granularity: 4096 }],
        server,
        ['block-export-add', { type: 'nbd', id: 'guest', 'node-name': 'src', writable: true }],
        { sh: nbdWrite('src', 'write -P 0x11 1M 64k') },
        { sh: nbdWrite('src', 'write -P 0x22 32M 4k') },
        ['block-export-del', { id: 'guest' }],
        exportGone('guest'),
        { sh: async (dir) => (await run('cp', [join(dir, 'src.qcow2'), join(dir, 'orig.qcow2')])).code },
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp', bitmap: { node: 'src', name: 'nope' } }],
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp', bitmap: { node: 'nonode', name: 'b0' } }],
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp', bitmap: { node: 'small', name: 'sb' } }],
        // A bitmap exported by NBD is busy.
        ['block-dirty-bitmap-add', { node: 'src', name: 'off', disabled: true }],
        ['block-export-add', { type: 'nbd', id: 'bm', 'node-name': 'src', bitmaps: ['off'] }],
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp', bitmap: { node: 'src', name: 'off' } }],
        ['block-export-del', { id: 'bm' }],
        exportGone('bm'),
        // A 4 KiB-grained bitmap: its dirty bits round out to whole 64 KiB clusters.
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'fine', file: 'src', target: 'small' }],
        ['blockdev-del', { 'node-name': 'fine' }],
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'fine', file: 'src', target: 'tmp', bitmap: { node: 'src', name: 'g4k' } }],
        nodes,
        ['blockdev-del', { 'node-name': 'fine' }],
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp', bitmap: { node: 'src', name: 'b0' } }],
        guestOnCbw,
        ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw' }],
        fleeceExport(),
        nodes,
        { sh: io('acc', ['read -P 0x11 1M 64k', 'read -P 0x22 32M 4k', 'read -P 0xdc 0x2001000 60k', 'read 0 64k', 'read 1M 128k'], true) },
        // The first write is outside the bitmap (nothing copied), the second half in it; the bitmap itself goes on recording.
        { sh: io('cbw', ['write -P 0xab 0 64k', 'write -P 0xad 0x00f8000 64k', 'write -P 0x1d 0x2000000 8k']) },
        nodes,
        { sh: io('acc', ['read -P 0x11 1M 64k', 'read -P 0x22 32M 4k', 'read -P 0xdc 0x2001000 60k', 'read 0 64k'], true) },
        { sh: mapExport('acc') },
      ],
      confirmWrites(['read -P 0xab 0 64k', 'read -P 0xad 0x00f8000 64k', 'read -P 0x1d 0x2000000 8k'], ['src.qcow2', 'tmp.qcow2']),
    );
  }, 90_000);

  for (const onCbwError of ['break-guest-write', 'break-snapshot'] as const) {
    it(`on-cbw-error=${onCbwError} with a target failing its first write (blkdebug): the guest write or the snapshot breaks`, async () => {
      const nodes = nodesAfterFailures;
      const log = await compare(
        [
          addSrc,
          [
            'blockdev-add',
            {
              driver: 'copy-before-write',
              'node-name': 'cbw',
              'on-cbw-error': onCbwError,
              file: 'src',
              target: {
                driver: 'qcow2',
                'node-name': 'tmp',
                file: { driver: 'blkdebug', image: file('tmp.qcow2'), 'inject-error': [{ event: 'write_aio', errno: 5, immediately: false, once: true }] },
              },
            },
          ],
          server,
          guestOnCbw,
          ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw' }],
          fleeceExport(),
          nodes,
          { sh: io('cbw', ['write -P 9 0 1M']) },
          nodes,
          { sh: io('acc', ['read -P 0x5d 0 64k', 'read -P 0xd5 1M 64k'], true) },
          { sh: io('cbw', ['write -P 8 1M 64k', 'read -P 8 1M 64k']) },
          nodes,
          { sh: io('acc', ['read -P 0xd5 1M 64k', 'read -P 0xdc 32M 64k'], true) },
          { sh: mapExport('acc') },
        ],
        async (dir) => ({
          src: await confirmWrites(['read -P 8 1M 64k'], ['src.qcow2', 'tmp.qcow2'])(dir),
          tmp: (await run('qemu-img', ['map', '--output=json', join(dir, 'tmp.qcow2')])).stdout.replace(/"offset": \d+/g, ''),
        }),
      );
      // The guest's write fails, or every later snapshot read does (EACCES, which NBD sends as EINVAL).
      expect(JSON.stringify(log)).toContain(onCbwError === 'break-guest-write' ? 'write failed: Input/output error' : 'read failed: Invalid argument');
    }, 90_000);
  }

  for (const onCbwError of ['break-guest-write', 'break-snapshot'] as const) {
    it(`cbw-timeout with a throttled target, on-cbw-error=${onCbwError}: a copy that takes longer than a second fails as the error policy says`, async () => {
      const nodes = nodesAfterFailures;
      const log = await compare(
        [
          ['object-add', { 'qom-type': 'throttle-group', id: 'group0', limits: { 'bps-write': 256 * 1024 } }],
          addSrc,
          ['blockdev-add', { driver: 'throttle', 'node-name': 'slow', 'throttle-group': 'group0', file: { driver: 'qcow2', file: file('tmp.qcow2') } }],
          ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', 'on-cbw-error': onCbwError, 'cbw-timeout': 1, file: 'src', target: 'slow' }],
          server,
          guestOnCbw,
          ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw' }],
          fleeceExport(),
          // Each copy is one zero write of 512 KiB: the first passes the empty bucket at once, the second waits for it
          // to drain (about 2 s), past the timeout.
          { sh: io('cbw', ['write -P 1 2M 512k', 'write -P 2 3M 512k']) },
          { sh: io('acc', ['read -P 0 2M 512k', 'read -P 0 3M 64k'], true) },
          // The timed-out copy goes on in the background: once it is done, nothing is left to copy there.
          copiesLeft(64 * 1024 * 1024 - 1024 * 1024),
          nodes,
          ['block-export-del', { id: 'fleece' }],
          exportGone('fleece'),
          ['block-export-del', { id: 'guest' }],
          exportGone('guest'),
        ],
        // The guest's second write failed under break-guest-write: the source holds zeroes there still.
        async (dir) => confirmWrites(['read -P 1 2M 512k', `read -P ${onCbwError === 'break-guest-write' ? 0 : 2} 3M 512k`], ['src.qcow2', 'tmp.qcow2'])(dir),
      );
      // ETIMEDOUT reaches an NBD client as EINVAL.
      expect(JSON.stringify(log)).toContain(onCbwError === 'break-guest-write' ? 'write failed: Invalid argument' : 'read failed: Invalid argument');
    }, 90_000);
  }

  it("push backup out of the snapshot (image-fleecing's push test): blockdev-backup from snapshot-access while the guest overwrites", async () => {
    const log = await compare(
      [
        addSrc,
        ['blockdev-add', { driver: 'file', 'node-name': 'tmp', filename: '${DIR}/tmp.raw' }],
        { sh: async (dir) => (await run('cp', [join(dir, 'src.qcow2'), join(dir, 'orig.qcow2')])).code },
        ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp' }],
        server,
        guestOnCbw,
        ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw' }],
        ['blockdev-add', { driver: 'qcow2', 'node-name': 'target', file: file('tgt.qcow2') }],
        ['blockdev-backup', { 'job-id': 'push', device: 'acc', target: 'target', sync: 'full', speed: 1 }],
        { sh: io('cbw', writes(OVERWRITE)) },
        ['block-job-set-speed', { device: 'push', speed: 0 }],
        { waitJob: 'push', event: 'BLOCK_JOB_COMPLETED' },
        { waitJob: 'push' },
        ['blockdev-del', { 'node-name': 'target' }],
        nodes,
      ],
      async (dir) => (await run('qemu-img', ['compare', join(dir, 'tgt.qcow2'), join(dir, 'orig.qcow2')])).stdout,
    );
    expect(log[log.length - 1]).toBe('Images are identical.\n');
  }, 90_000);

  it("snapshot-access over a backup job's copy-before-write filter reads the job's point in time; the filter's bitmaps show what the guest's writes copied", async () => {
    const log = await compare(
      [
        addSrc,
        addTmp,
        ['blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tmp', sync: 'none', 'filter-node-name': 'bf' }],
        ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'acc', file: 'bf' }],
        server,
        ['block-export-add', { type: 'nbd', id: 'guest', 'node-name': 'bf', writable: true }],
        fleeceExport(),
        { sh: io('bf', writes(OVERWRITE)) },
        nodes,
        { sh: io('acc', [...reads(PATTERNS), ...reads(ZEROES)], true) },
        ['block-export-del', { id: 'fleece' }],
        exportGone('fleece'),
        ['blockdev-del', { 'node-name': 'acc' }],
        ['block-export-del', { id: 'guest' }],
        exportGone('guest'),
        ['block-job-cancel', { device: 'j' }],
        { waitJob: 'j' },
        nodes,
      ],
      confirmWrites(reads(OVERWRITE), ['src.qcow2', 'tmp.qcow2']),
    );
    expect(JSON.stringify(log)).not.toContain('Pattern verification failed');
  }, 90_000);

  it('where blockemu differs on purpose: QEMU 7.2 answers for a copied cluster from the source when uncopied ones follow it in the request, so a convert of the export gets the guest\'s zeroes; blockemu keeps the point in time', async () => {
    // QEMU 7.2's hbitmap_status calls a dirty run that ends inside the range clean, and cbw_snapshot_read_lock trusts it.
    const steps: Step[] = [
      addSrc,
      addTmp,
      server,
      ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'cbw', file: 'src', target: 'tmp' }],
      guestOnCbw,
      ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'acc', file: 'cbw' }],
      fleeceExport(),
      { sh: io('cbw', ['write -z 0 64k']) },
      // A read of just the copied cluster comes from the target in both.
      { sh: io('acc', ['read -P 0x5d 0 64k'], true) },
      { sh: mapExport('acc') },
      {
        sh: async (dir) => {
          const out = join(dir, 'conv.raw');
          await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(dir, 'acc'), out]);
          const r = await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x5d 0 64k', out]);
          return untimed(r.stdout + r.stderr);
        },
      },
    ];
    const theirs = await play('qsd', images, steps);
    const ours = await play(OURS, images, steps);
    // qsd: the map calls the copied cluster a hole of zeroes (the source's state now) and the convert reads zeroes there.
    expect(theirs[8]).toEqual({ code: 0, out: 'read 65536/65536 bytes at offset 0\n' });
    expect((theirs[9] as Array<Record<string, unknown>>)[0]).toMatchObject({ start: 0, data: false, zero: true });
    expect(theirs[10]).toContain('Pattern verification failed at offset 0, 65536 bytes');
    // blockemu: the snapshot's data, in the map and in the copy.
    expect((ours[9] as Array<Record<string, unknown>>)[0]).toMatchObject({ start: 0, length: 65536, data: true, zero: false });
    expect(ours[10]).toBe('read 65536/65536 bytes at offset 0\n');
    // Everything else is alike.
    expect([...ours.slice(0, 9), ...ours.slice(11)]).toEqual([...theirs.slice(0, 9), ...theirs.slice(11)]);
  }, 90_000);

  it('refusals and names: read-only and missing targets, a read-only cbw, snapshot-access over a node without a snapshot, json: names through cbw and snapshot-access', async () => {
    await compare([
      addSrc,
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'tro', 'read-only': true, file: file('tmp.qcow2') }],
      ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'c1', file: 'src', target: 'tro' }],
      ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'c1', file: 'src', target: 'nonode' }],
      ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'c1', file: 'nonode', target: 'tro' }],
      ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'c1', file: 'src' }],
      ['blockdev-del', { 'node-name': 'tro' }],
      ['blockdev-add', { driver: 'raw', 'node-name': 'traw', file: { driver: 'file', filename: '${DIR}/tmp.raw' } }],
      ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'c2', 'read-only': true, file: 'src', target: 'traw' }],
      ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'a2', file: 'c2' }],
      ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'a3', 'read-only': true, file: 'c2' }],
      server,
      ['block-export-add', { type: 'nbd', id: 'e', 'node-name': 'c2', writable: true }],
      ['block-export-add', { type: 'nbd', id: 'e3', 'node-name': 'a3', writable: true }],
      // A second cbw on the same source: adding it is fine, writing through it while the first has a user is not.
      ['block-export-add', { type: 'nbd', id: 'a3', 'node-name': 'a3' }],
      ['blockdev-add', { driver: 'copy-before-write', 'node-name': 'c3', file: 'src', target: { driver: 'null-co', size: 67108864 } }],
      ['block-export-add', { type: 'nbd', id: 'c3', 'node-name': 'c3', writable: true }],
      { sh: io('a3', ['read -P 0x5d 0 64k'], true) },
      ['blockdev-add', { driver: 'raw', 'node-name': 'rr', offset: 65536, file: 'c2' }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'q2', file: file('small.qcow2'), backing: 'a2' }],
      // snapshot-access over a node with no snapshot: added, but nothing can be read.
      ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'plain', file: 'src' }],
      ['block-export-add', { type: 'nbd', id: 'plain', 'node-name': 'plain' }],
      { sh: io('plain', ['read 0 4k', 'map'], true) },
      { sh: mapExport('plain') },
      ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'a4', file: { driver: 'copy-before-write', file: { driver: 'null-co' }, target: { driver: 'null-co' } } }],
      nodes,
      without(['query-named-block-nodes'], 'actual-size'),
      ['block_resize', { 'node-name': 'a2', size: 1 << 20 }],
    ]);
  }, 90_000);
});
