/**
 * A fault armed with __org.blockemu_fault-add does to a backup what the
 * same failure written as blkdebug rules does: the session (the job's
 * events, its errors, the target qemu-img compares afterwards) is played
 * with blkdebug on qemu-storage-daemon, with blkdebug on blockemu, and
 * with a fault on blockemu's plain target, and the three must agree.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { file, play, sameImages, type Step } from '../helpers/qmp-session.js';
import { OURS } from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo } from '../helpers/qemu.js';

const MiB = 1 << 20;

async function setup(dir: string): Promise<void> {
  expect((await qemuImg('create', '-f', 'raw', join(dir, 'src.raw'), '1M')).code).toBe(0);
  expect((await qemuIo('-f', 'raw', '-c', 'write -P 0x11 0 1M', join(dir, 'src.raw'))).code).toBe(0);
  expect((await qemuImg('create', '-f', 'raw', join(dir, 'tgt.raw'), '1M')).code).toBe(0);
}

type Policy = 'report' | 'stop' | 'enospc' | 'ignore';

/** How a failure is written: blkdebug rules on a filter under the target's format node, or a fault on the target's file node. */
interface Failure {
  what: string;
  blkdebug: Record<string, unknown>[];
  fault: Record<string, unknown>;
}

const failures: Failure[] = [
  {
    what: 'the first write fails with EIO, once',
    blkdebug: [{ event: 'write_aio', errno: 5, once: true }],
    fault: { type: 'error', iotype: 'write', nth: 1, errno: 'EIO' },
  },
  {
    what: 'the first write fails with ENOSPC, once',
    blkdebug: [{ event: 'write_aio', errno: 28, once: true }],
    fault: { type: 'error', iotype: 'write', nth: 1, errno: 'ENOSPC' },
  },
  {
    what: 'every write covering sector 300 fails with EIO',
    blkdebug: [{ event: 'write_aio', errno: 5, sector: 300 }],
    fault: { type: 'error', iotype: 'write', offset: 300 * 512, length: 512, errno: 'EIO' },
  },
];

/** Whether the job stops (and is resumed) rather than ends, for this policy and errno. */
const stops = (policy: Policy, f: Failure) => policy === 'stop' || (policy === 'enospc' && JSON.stringify(f.fault).includes('ENOSPC'));

function steps(policy: Policy, f: Failure, as: 'blkdebug' | 'fault'): Step[] {
  const image = file('tgt.raw');
  const target = as === 'blkdebug' ? { driver: 'blkdebug', 'node-name': 'tf', image, 'inject-error': f.blkdebug } : { ...image, 'node-name': 'tf' };
  const s: Step[] = [
    ['blockdev-add', { driver: 'raw', 'node-name': 'src', file: file('src.raw') }],
    ['blockdev-add', { driver: 'raw', 'node-name': 'tgt', file: target }],
  ];
  if (as === 'fault') s.push(['__org.blockemu_fault-add', { 'node-name': 'tf', id: 'f', ...f.fault }]);
  s.push(['blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', 'on-target-error': policy }]);
  if (stops(policy, f)) {
    s.push({ waitJob: 'j', event: 'BLOCK_JOB_ERROR' }, { waitJob: 'j', status: 'paused' });
    // A rule that fails every retry cannot be lifted in blkdebug: the job is cancelled instead of resumed.
    s.push('nth' in f.fault ? ['block-job-resume', { device: 'j' }] : ['block-job-cancel', { device: 'j', force: true }]);
  }
  s.push({ waitJob: 'j' });
  return s;
}

/**
 * The session without what only the fault variant has: the outcomes of
 * its fault commands (play logs one entry per command, look and sh step;
 * none for waits) and the FAULT_FIRED events.
 */
function withoutFaults(log: unknown[], played: readonly Step[]): unknown[] {
  const drop = new Set<number>();
  let i = 0;
  for (const s of played) {
    if (!Array.isArray(s) && 'waitJob' in s) continue;
    if (!Array.isArray(s) && 'started' in s) continue;
    if (Array.isArray(s) && s[0].startsWith('__org.blockemu_')) drop.add(i);
    i++;
  }
  return log
    .filter((_e, k) => !drop.has(k))
    .map((e) => (e && typeof e === 'object' && 'events' in e ? { events: (e as { events: Array<{ event: string }> }).events.filter((x) => x.event !== '__org.blockemu_FAULT_FIRED') } : e));
}

describe.skipIf(!qemu.available)('a fault does to a backup what blkdebug does (qsd and blockemu with blkdebug, blockemu with fault-add)', () => {
  for (const f of failures) {
    for (const policy of ['report', 'stop', 'enospc', 'ignore'] as const) {
      // With ignore, backup retries a failed copy until it succeeds (QEMU's backup_loop): a rule that never lifts loops for ever.
      if (policy === 'ignore' && !('nth' in f.fault)) continue;
      it(`${f.what}, on-target-error=${policy}`, async () => {
        const after = sameImages('src.raw', 'tgt.raw');
        const theirs = await play('qsd', setup, steps(policy, f, 'blkdebug'), after);
        const oursBlkdebug = await play(OURS, setup, steps(policy, f, 'blkdebug'), after);
        const oursFault = await play(OURS, setup, steps(policy, f, 'fault'), after);
        expect(oursBlkdebug).toEqual(theirs);
        expect(withoutFaults(oursFault, steps(policy, f, 'fault'))).toEqual(theirs);
        // The fault was announced as it fired.
        expect(JSON.stringify(oursFault)).toContain('__org.blockemu_FAULT_FIRED');
      });
    }
  }

  it('an ENOSPC-after-N-bytes target with on-target-error=enospc pauses the job; with room again (fault removed) it completes', async () => {
    const log = await play(
      OURS,
      setup,
      [
        ['blockdev-add', { driver: 'raw', 'node-name': 'src', file: file('src.raw') }],
        ['blockdev-add', { driver: 'raw', 'node-name': 'tgt', file: { ...file('tgt.raw'), 'node-name': 'tf' } }],
        ['__org.blockemu_fault-add', { 'node-name': 'tf', id: 'full', type: 'enospc-after', bytes: MiB / 2 }],
        ['blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full', 'on-target-error': 'enospc' }],
        { waitJob: 'j', event: 'BLOCK_JOB_ERROR' },
        { waitJob: 'j', status: 'paused' },
        { look: async (c) => (await c.execute<Array<{ offset: number; status: string }>>('query-block-jobs')).map((j) => ({ status: j.status, halfway: j.offset <= MiB / 2 })) },
        ['__org.blockemu_fault-remove', { id: 'full' }],
        ['block-job-resume', { device: 'j' }],
        { waitJob: 'j' },
      ],
      sameImages('src.raw', 'tgt.raw'),
    );
    expect(log[4]).toEqual([{ status: 'paused', halfway: true }]);
    const events = (log.at(-2) as { events: Array<{ event: string; data: Record<string, unknown> }> }).events;
    expect(events.find((e) => e.event === 'BLOCK_JOB_ERROR')?.data).toEqual({ device: 'j', operation: 'write', action: 'stop' });
    expect(events.find((e) => e.event === 'BLOCK_JOB_COMPLETED')?.data).toMatchObject({ device: 'j', offset: MiB, len: MiB });
    expect(events.find((e) => e.event === '__org.blockemu_FAULT_FIRED')?.data).toMatchObject({ id: 'full', type: 'enospc-after', errno: 'ENOSPC' });
    expect(log.at(-1)).toBe('Images are identical.\n');
  });
});

