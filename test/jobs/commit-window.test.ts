/**
 * A commit without a speed limit and without injected faults runs many
 * steps at once (CommitJob's StepWindow). These sessions hold it to what
 * qemu-storage-daemon's one-step-at-a-time loop does:
 * - base's clusters land at the same host offsets (`qemu-img map` with
 *   offsets), because base's writes issue in offset order;
 * - a disk error is met as QEMU meets it: the same events, the same
 *   progress at the pause or the end, and no write issued after a step
 *   whose read failed.
 * blkdebug would make the job go one step at a time (its faults are
 * QEMU's to the request), so blockemu's side gets its failures from a
 * failing disk instead: the file node under the image fails the request
 * that blkdebug fails in qemu-storage-daemon.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { BlockdevSpec } from '../../src/blockdev/open.js';
import { internalDaemon, startDaemon } from '../../src/embed.js';
import { BlockError } from '../../src/image/errors.js';
import { strerror } from '../../src/image/errno.js';
import type { QmpClient } from '../../src/qmp/client.js';
import { eventView, normalise, startExportDaemon } from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo, run, withTempDir } from '../helpers/qemu.js';

const C = 65536;
const SIZE = 4 << 20;
/** The copy step that fails: mid's 6th data cluster (guest offset 11 × 64 KiB). */
const FAIL_GUEST = 11 * C;

/** base holds the even 64 KiB clusters, mid (over base) the odd ones, top (over mid) nothing. */
async function makeChain(dir: string): Promise<void> {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  const writes = (first: number, p: number) => Array.from({ length: SIZE / C / 2 }, (_, i) => ['-c', `write -q -P ${(i % 200) + p} ${(2 * i + first) * C} 64k`]).flat();
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), String(SIZE)));
  await ok(qemuIo(...writes(0, 1), join(dir, 'base.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'mid.qcow2')));
  await ok(qemuIo(...writes(1, 30), join(dir, 'mid.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')));
  await ok(qemuImg('convert', '-O', 'raw', join(dir, 'mid.qcow2'), join(dir, 'mid-view.raw')));
}

async function hostOffset(image: string, guest: number): Promise<number> {
  const map = JSON.parse((await run('qemu-img', ['map', '-U', '--output=json', image])).stdout) as Array<{ start: number; length: number; offset?: number }>;
  const e = map.find((m) => m.start <= guest && guest < m.start + m.length && m.offset !== undefined)!;
  return e.offset! + (guest - e.start);
}

/** How the disk under a layer fails (slow: it only answers late). */
type Failing = { layer: 'mid' | 'base'; errno: 'EIO' | 'ENOSPC'; once: boolean } | { layer: 'mid'; slow: true; ms?: number; every?: boolean };

/** The chain as named nodes; the failing layer's file behind blkdebug (for qemu-storage-daemon) when `rule` is given. */
function chain(dir: string, failing?: Failing, rule?: Record<string, unknown>, baseWritable = false): BlockdevSpec[] {
  const image = (layer: string) => {
    const f = { driver: 'file', filename: join(dir, `${layer}.qcow2`), 'node-name': `${layer}-file` };
    return failing?.layer === layer && rule ? { driver: 'blkdebug', image: f, 'inject-error': [rule] } : f;
  };
  return [
    { driver: 'qcow2', 'node-name': 'base', 'read-only': !baseWritable, file: image('base') },
    { driver: 'qcow2', 'node-name': 'mid', 'read-only': true, backing: 'base', file: image('mid') },
    { driver: 'qcow2', 'node-name': 'top', backing: 'mid', file: image('top') },
  ];
}

interface Policy {
  onError: 'report' | 'stop' | 'enospc';
}

/** The commit, to its error's pause (query-block-jobs there, then resumed) or its end; what the client saw. */
async function session(c: QmpClient, dir: string, p: Policy, failing: Failing | undefined): Promise<unknown[]> {
  const log: unknown[] = [];
  await c.execute('block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'base-node': 'base', 'on-error': p.onError, 'auto-dismiss': false });
  const stops = failing !== undefined && p.onError !== 'report';
  if (stops) {
    await waitStatus(c, 'paused');
    log.push(await c.execute('query-block-jobs'));
    await c.execute('block-job-resume', { device: 'c' });
  }
  await waitStatus(c, 'concluded');
  log.push(await c.execute('query-block-jobs'));
  await c.execute('job-dismiss', { id: 'c' });
  return normalise(log, dir) as unknown[];
}

async function waitStatus(c: QmpClient, status: string): Promise<void> {
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; await sleep(10)) {
    const jobs = await c.execute<Array<{ id: string; status: string }>>('query-jobs');
    if (jobs.find((j) => j.id === 'c')?.status === status) return;
  }
  throw new Error(`the job never became ${status}`);
}

async function waitOffset(c: QmpClient, offset: number): Promise<void> {
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; await sleep(5)) {
    const [job] = await c.execute<Array<{ offset: number }>>('query-block-jobs');
    if (job && job.offset >= offset) return;
  }
  throw new Error(`the job never reached offset ${offset}`);
}

/** What qemu-img says of base afterwards: its clusters where they lie on the host, and its check. */
async function baseReport(dir: string): Promise<unknown> {
  const map = JSON.parse((await run('qemu-img', ['map', '--output=json', join(dir, 'base.qcow2')])).stdout) as unknown;
  const check = await run('qemu-img', ['check', '--output=json', join(dir, 'base.qcow2')]);
  const checked = JSON.parse(check.stdout) as Record<string, unknown>;
  return { map, check: { code: check.code, corruptions: checked['corruptions'] ?? 0, leaks: checked['leaks'] ?? 0 } };
}

async function onQsd(root: string, p: Policy, failing?: Failing): Promise<{ log: unknown[]; events: unknown[]; base: unknown }> {
  const dir = join(root, 'qsd');
  await run('mkdir', [dir]);
  await makeChain(dir);
  let rule: Record<string, unknown> | undefined;
  if (failing && 'errno' in failing) {
    const at = failing.layer === 'mid' ? { sector: (await hostOffset(join(dir, 'mid.qcow2'), FAIL_GUEST)) / 512 } : {};
    rule = { event: failing.layer === 'mid' ? 'read_aio' : 'write_aio', errno: failing.errno === 'EIO' ? 5 : 28, once: failing.once, ...at };
  }
  const d = await startExportDaemon('qsd', { dir, blockdevs: chain(dir, failing, rule).map((b) => JSON.stringify(b)) });
  const log = await session(d.client, dir, p, failing);
  const events = (await d.quit()).filter((e) => e.event !== 'SHUTDOWN');
  return { log, events: normalise(events, dir) as unknown[], base: await baseReport(dir) };
}

async function onBlockemu(root: string, p: Policy, failing?: Failing, slowToo?: Failing): Promise<{ log: unknown[]; events: unknown[]; base: unknown }> {
  const slow = failing && 'slow' in failing;
  const dir = join(root, 'ours');
  await run('mkdir', [dir]);
  await makeChain(dir);
  const d = await startDaemon({ blockdevs: chain(dir) });
  let events: unknown[];
  let log: unknown[];
  try {
    if (failing) await failDisk(d, dir, failing);
    if (slowToo) await failDisk(d, dir, slowToo);
    const c = await d.client();
    log = await session(c, dir, p, slow ? undefined : failing);
    events = c.takeEvents().map(eventView);
  } finally {
    await d.close();
  }
  return { log, events: normalise(events, dir) as unknown[], base: await baseReport(dir) };
}

/**
 * The disk under a layer fails as the blkdebug rule does, only later: a
 * read of mid's file covering FAIL_GUEST's cluster, or base's first data
 * write.
 */
async function failDisk(d: Awaited<ReturnType<typeof startDaemon>>, dir: string, f: Failing): Promise<void> {
  const node = internalDaemon(d).graph.get(`${f.layer}-file`)! as unknown as Record<string, (...a: never[]) => Promise<void>>;
  // A disk that fails slowly: the steps after the failing one have read (and written) meanwhile.
  const late = () => sleep('slow' in f ? (f.ms ?? 50) : 50).then(() => ('slow' in f ? undefined : Promise.reject(new BlockError('IO', strerror(f.errno), { errno: f.errno }))));
  let fired = false;
  const fires = () => {
    const now = !('once' in f && f.once && fired);
    fired = true;
    return now;
  };
  if (f.layer === 'mid') {
    const at = await hostOffset(join(dir, 'mid.qcow2'), FAIL_GUEST);
    const readInto = node['doReadInto']!.bind(node) as (buf: Uint8Array, offset: number) => Promise<void>;
    node['doReadInto'] = ((buf: Uint8Array, offset: number) => {
      const hit = 'every' in f && f.every ? at <= offset : offset <= at && at < offset + buf.length;
      if (hit && fires()) return late().then(() => readInto(buf, offset));
      return readInto(buf, offset);
    }) as never;
  } else {
    const write = node['doWrite']!.bind(node) as (offset: number, data: Uint8Array, flags: unknown) => Promise<void>;
    node['doWrite'] = ((offset: number, data: Uint8Array, flags: unknown) => {
      if (data.length === C && fires()) return late().then(() => write(offset, data, flags));
      return write(offset, data, flags);
    }) as never;
  }
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('a commit with steps in flight meets the world as QEMU’s one-at-a-time loop', () => {
  it('base’s clusters lie where qemu-storage-daemon puts them, also when a read answers after those of later steps', async () => {
    await withTempDir(async (root) => {
      const theirs = await onQsd(root, { onError: 'report' });
      const ours = await onBlockemu(root, { onError: 'report' }, { layer: 'mid', slow: true });
      expect(ours).toEqual(theirs);
      expect((await run('qemu-img', ['compare', '-q', '-F', 'raw', join(root, 'ours', 'base.qcow2'), join(root, 'ours', 'mid-view.raw')])).code).toBe(0);
    });
  }, 60_000);

  for (const [name, p, failing] of [
    ['a read error reported: nothing written past it', { onError: 'report' }, { layer: 'mid', errno: 'EIO', once: false }],
    ['a read error stopping the job: the steps after it wait, and go in order after the resume', { onError: 'stop' }, { layer: 'mid', errno: 'EIO', once: true }],
    ['ENOSPC writing base stopping the job: progress at the pause is what came before it', { onError: 'enospc' }, { layer: 'base', errno: 'ENOSPC', once: true }],
  ] as const) {
    it(name, async () => {
      await withTempDir(async (root) => {
        const theirs = await onQsd(root, p, failing);
        const ours = await onBlockemu(root, p, failing);
        expect(ours).toEqual(theirs);
      });
    }, 60_000);
  }

  it('a write that fails before the later steps’ turns come: they write nothing until the failed step is retried, so its clusters go where QEMU’s go', async () => {
    await withTempDir(async (root) => {
      const failing = { layer: 'base', errno: 'ENOSPC', once: true } as const;
      const theirs = await onQsd(root, { onError: 'enospc' }, failing);
      // The first step's write fails after 50 ms; the reads from FAIL_GUEST on answer after 300 ms, so those steps' turns come after the failure.
      const ours = await onBlockemu(root, { onError: 'enospc' }, failing, { layer: 'mid', slow: true, ms: 300, every: true });
      expect(ours).toEqual(theirs);
    });
  }, 60_000);

  it('ENOSPC writing base reported: the events and progress are QEMU’s; what base holds past the failure is mid’s data (README)', async () => {
    await withTempDir(async (root) => {
      const failing = { layer: 'base', errno: 'ENOSPC', once: true } as const;
      const theirs = await onQsd(root, { onError: 'report' }, failing);
      const ours = await onBlockemu(root, { onError: 'report' }, failing);
      expect(ours.log).toEqual(theirs.log);
      expect(ours.events).toEqual(theirs.events);
      expect((ours.base as { check: unknown }).check).toEqual((theirs.base as { check: unknown }).check);
      // Every guest cluster of base reads as QEMU left it, or as mid holds it.
      const read = async (dir: string, image: string, at: number) => {
        const out = await qemuIo('-f', image.endsWith('.raw') ? 'raw' : 'qcow2', '-c', `read -v ${at} 16`, join(root, dir, image));
        // The dump's lines, without the timing that follows.
        return { stdout: out.stdout.split('\n').filter((l) => /^[0-9a-f]{8}:/.test(l)).join('\n') };
      };
      for (let at = 0; at < SIZE; at += C) {
        const mine = (await read('ours', 'base.qcow2', at)).stdout;
        if (mine !== (await read('qsd', 'base.qcow2', at)).stdout) expect(mine).toBe((await read('ours', 'mid-view.raw', at)).stdout);
      }
    });
  }, 120_000);
});

describe.skipIf(!qemu.available)('a commit with steps in flight, paused or cancelled', () => {
  // A step's data goes to base's end at once (its tables stay in the daemon's cache a while): the file's size shows it.
  const sizeOf = async (dir: string) => (await stat(join(dir, 'base.qcow2'))).size;

  it('pauses with none of its steps in flight: base does not grow while it is paused, and the commit ends as it would have', async () => {
    await withTempDir(async (root) => {
      const dir = join(root, 'ours');
      await run('mkdir', [dir]);
      await makeChain(dir);
      const d = await startDaemon({ blockdevs: chain(dir) });
      try {
        // From FAIL_GUEST's cluster on, every read of mid is slow: whatever is in flight at the pause answers late.
        await failDisk(d, dir, { layer: 'mid', slow: true, ms: 300, every: true });
        const c = await d.client();
        await c.execute('block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'base-node': 'base', 'auto-dismiss': false });
        // Counted up to the slow step: it and those after it are in flight.
        await waitOffset(c, FAIL_GUEST);
        await c.execute('block-job-pause', { device: 'c' });
        await waitStatus(c, 'paused');
        const before = { jobs: await c.execute('query-block-jobs'), size: await sizeOf(dir) };
        // A step still in flight would land meanwhile.
        await sleep(400);
        expect({ jobs: await c.execute('query-block-jobs'), size: await sizeOf(dir) }).toEqual(before);
        await c.execute('block-job-resume', { device: 'c' });
        await waitStatus(c, 'concluded');
        const [job] = await c.execute<Array<{ offset: number; len: number }>>('query-block-jobs');
        expect(job!.offset).toBe(job!.len);
        await c.execute('job-dismiss', { id: 'c' });
      } finally {
        await d.close();
      }
      expect((await run('qemu-img', ['compare', '-q', '-F', 'raw', join(dir, 'base.qcow2'), join(dir, 'mid-view.raw')])).code).toBe(0);
      expect((await run('qemu-img', ['check', join(dir, 'base.qcow2')])).code).toBe(0);
    });
  }, 60_000);

  it('cancelled, it ends with no step in flight: the chain reads as before and every image checks clean', async () => {
    await withTempDir(async (root) => {
      const dir = join(root, 'ours');
      await run('mkdir', [dir]);
      await makeChain(dir);
      await run('qemu-img', ['convert', '-O', 'raw', join(dir, 'top.qcow2'), join(dir, 'top-view.raw')]);
      // base read-write from the start: no reopen at the job's end waits for its requests in its stead.
      const d = await startDaemon({ blockdevs: chain(dir, undefined, undefined, true) });
      try {
        // From FAIL_GUEST's cluster on, every read of mid is slow: whatever is in flight at the pause answers late.
        await failDisk(d, dir, { layer: 'mid', slow: true, ms: 300, every: true });
        const c = await d.client();
        await c.execute('block-commit', { 'job-id': 'c', device: 'top', 'top-node': 'mid', 'base-node': 'base' });
        await waitOffset(c, FAIL_GUEST);
        await c.execute('block-job-cancel', { device: 'c' });
        await c.waitForEvent('BLOCK_JOB_CANCELLED');
        const after = await sizeOf(dir);
        await sleep(400);
        expect(await sizeOf(dir)).toBe(after);
      } finally {
        await d.close();
      }
      expect((await run('qemu-img', ['compare', '-q', '-F', 'raw', join(dir, 'top.qcow2'), join(dir, 'top-view.raw')])).code).toBe(0);
      for (const image of ['base.qcow2', 'mid.qcow2', 'top.qcow2']) expect((await run('qemu-img', ['check', join(dir, image)])).code).toBe(0);
    });
  }, 60_000);
});
