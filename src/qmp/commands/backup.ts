import type { BlockNode } from '../../blockdev/node.js';
import { BackupJob, type OnError } from '../../jobs/backup.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import type { ArgsType } from '../schema/command.js';
import { blockdevBackup } from '../schema/backup.js';

type Args = ArgsType<typeof blockdevBackup>;
const fail = (desc: string) => new QmpError('GenericError', desc);

/**
 * The checks of blockdev.c do_backup_common and backup_job_create, in
 * QEMU's order and words, then the job. Dirty bitmaps are not implemented
 * yet, so any named bitmap is "not found", as QEMU says for a bitmap the
 * node does not have.
 */
export async function startBackup(ctx: QmpContext, a: Args, source: BlockNode, target: BlockNode): Promise<void> {
  if ((a.sync === 'incremental' || a.sync === 'bitmap') && a.bitmap === undefined) throw fail(`must provide a valid bitmap name for '${a.sync}' sync mode`);
  if (a.sync === 'incremental' && a['bitmap-mode'] !== undefined && a['bitmap-mode'] !== 'on-success') {
    throw fail("Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
  }
  if (a.bitmap !== undefined) throw fail(`Bitmap '${a.bitmap}' could not be found`);
  if (a['bitmap-mode'] !== undefined) throw fail('Cannot specify bitmap sync mode without a bitmap');
  if (source === target) throw fail('Source and target cannot be the same');
  if (a.compress && typeof (target as { writeCompressed?: unknown }).writeCompressed !== 'function') throw fail('Compression is not supported for this drive ');
  for (const n of [source, target]) if (n.busyWith) throw fail(`Node '${n.nodeName}' is busy: block device is in use by ${n.busyWith}`);
  const perf = a['x-perf'];
  if (perf?.['max-workers'] !== undefined && (perf['max-workers'] < 1 || perf['max-workers'] > 2147483647)) throw fail('max-workers must be between 1 and 2147483647');
  if (perf?.['max-chunk'] !== undefined && perf['max-chunk'] < 0) throw fail('max-chunk must be zero (which means no limit) or positive');
  if (source.size() !== target.size()) throw fail('Source and target image have different sizes');
  const id = a['job-id'] ?? '';
  ctx.jobs.checkId(id);
  const job = new BackupJob(id, ctx.jobEvents, {
    source,
    target,
    sync: a.sync === 'top' || a.sync === 'none' ? a.sync : 'full',
    speed: Math.max(0, a.speed ?? 0),
    compress: a.compress ?? false,
    onSourceError: a['on-source-error'] as OnError | undefined,
    onTargetError: a['on-target-error'] as OnError | undefined,
    maxChunk: perf?.['max-chunk'],
    autoFinalize: a['auto-finalize'],
    autoDismiss: a['auto-dismiss'],
  });
  if (perf?.['max-chunk'] && perf['max-chunk'] < job.copier.clusterSize) {
    await job.earlyFail();
    throw fail(`Required max-chunk (${perf['max-chunk']}) is less than backup cluster size (${job.copier.clusterSize})`);
  }
  // QEMU sets the speed after creating the job: a negative one fails it with created and null already sent.
  if ((a.speed ?? 0) < 0) {
    await job.earlyFail();
    throw fail("Parameter 'speed' expects a non-negative value");
  }
  ctx.jobs.add(job);
  job.start();
}

export function addBackupCommands(table: CommandTable<QmpContext>): void {
  table.add(blockdevBackup, async (a, ctx) => {
    const source = ctx.graph.find(a.device);
    const target = ctx.graph.find(a.target);
    await startBackup(ctx, a, source, target);
  });
}

