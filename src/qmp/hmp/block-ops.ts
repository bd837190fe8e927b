/**
 * The human monitor's block operations that stand for one QMP command
 * each (block/monitor/block-hmp-cmds.c): drive_mirror, drive_backup,
 * snapshot_blkdev and block_set_io_throttle with the arguments their
 * hmp_* functions fill in, and `commit`, which is no job but a copy made
 * there and then (bdrv_commit).
 */
import { cowChild, skipFilters, skipImplicitFilters } from '../../blockdev/chain.js';
import { CommitFailure, commitIntoBacking } from '../../blockdev/commit-backing.js';
import type { BlockNode } from '../../blockdev/node.js';
import { strerror } from '../../image/errno.js';
import { reopenContext } from '../commands/reopen.js';
import type { HmpArgs } from './args.js';
import { callQmp, HmpCommandError, type HmpContext, HmpReportError } from './command.js';

const flag = (a: HmpArgs, name: string) => a[name] === true;
const opt = (a: HmpArgs, name: string, key = name) => (a[name] !== undefined ? { [key]: a[name] } : {});

/** What drive_mirror and drive_backup fill in alike: sync top unless -f, a new image unless -n. */
const copyJobArgs = (a: HmpArgs) => ({
  device: a['device'],
  target: a['target'],
  ...opt(a, 'format'),
  sync: flag(a, 'full') ? 'full' : 'top',
  mode: flag(a, 'reuse') ? 'existing' : 'absolute-paths',
});

/** hmp_drive_mirror: unmap on. */
export async function driveMirror(ctx: HmpContext, a: HmpArgs): Promise<void> {
  await callQmp(ctx, 'drive-mirror', { ...copyJobArgs(a), unmap: true });
}

/** hmp_drive_backup: -c compresses. */
export async function driveBackup(ctx: HmpContext, a: HmpArgs): Promise<void> {
  await callQmp(ctx, 'drive-backup', { ...copyJobArgs(a), ...(flag(a, 'compress') ? { compress: true } : {}) });
}

/** hmp_snapshot_blkdev: the file is required (an internal snapshot was once meant to be the default). */
export async function snapshotBlkdev(ctx: HmpContext, a: HmpArgs): Promise<void> {
  if (a['snapshot-file'] === undefined) throw new HmpCommandError("Parameter 'snapshot-file' is missing");
  await callQmp(ctx, 'blockdev-snapshot-sync', {
    device: a['device'],
    'snapshot-file': a['snapshot-file'],
    ...opt(a, 'format'),
    mode: flag(a, 'reuse') ? 'existing' : 'absolute-paths',
  });
}

/** hmp_block_set_io_throttle: the six limits; the name is a drive's if one has it, else a device's id. */
export async function blockSetIoThrottle(ctx: HmpContext, a: HmpArgs): Promise<void> {
  const name = a['device'] as string;
  const limits = Object.fromEntries(['bps', 'bps_rd', 'bps_wr', 'iops', 'iops_rd', 'iops_wr'].map((k) => [k, a[k]]));
  await callQmp(ctx, 'block_set_io_throttle', { ...(ctx.qmp.graph.backends.byName(name) ? { device: name } : { id: name }), ...limits });
}

/**
 * hmp_commit: `commit DEVICE` or `commit all` (blk_commit_all: every
 * drive with a medium whose image has a backing file, stopping at the
 * first failure). Failures are reported as error_report does, without
 * "Error: ".
 */
export async function commit(ctx: HmpContext, a: HmpArgs): Promise<void> {
  const device = a['device'] as string;
  const backends = ctx.qmp.graph.backends;
  const reopen = reopenContext(ctx.qmp);
  const run = async (bs: BlockNode) => {
    try {
      await commitIntoBacking(ctx.qmp.graph, reopen, bs);
    } catch (err) {
      if (!(err instanceof CommitFailure)) throw err;
      const line = `'commit' error for '${device}': ${strerror(err.errno)}`;
      throw new HmpReportError(err.reported !== undefined ? `${err.reported}\n${line}` : line, { cause: err });
    }
  };
  if (device === 'all') {
    for (const b of backends.list()) {
      const top = b.node ? skipFilters(b.node) : undefined;
      if (top && cowChild(top)) await run(top);
    }
    return;
  }
  const b = backends.byName(device);
  if (!b) throw new HmpReportError(`Device '${device}' not found`);
  if (!b.node) throw new HmpReportError(`Device '${device}' has no medium`);
  await run(skipImplicitFilters(b.node));
}
