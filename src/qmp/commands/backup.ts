import { unlink } from 'node:fs/promises';
import { BitmapCheck, type DirtyBitmap } from '../../blockdev/dirty-bitmap.js';
import { CHILD_DATA, CHILD_FILTERED_PRIMARY, type ChildOwner } from '../../blockdev/child.js';
import { BlockCopy } from '../../blockdev/block-copy.js';
import { CbwState } from '../../blockdev/drivers/cbw-state.js';
import { cbwChildPerm, CopyBeforeWriteNode } from '../../blockdev/drivers/copy-before-write.js';
import { cowChild, skipFilters } from '../../blockdev/chain.js';
import { attachChild, replaceNode, setBacking } from '../../blockdev/graph-edit.js';
import { GraphTransaction } from '../../blockdev/graph-transaction.js';
import { PERM_ALL } from '../../image/perm.js';
import type { BlockNode } from '../../blockdev/node.js';
import { openBlockdev } from '../../blockdev/open.js';
import { type BitmapMode, BackupJob, backupClusterSize, type SyncMode } from '../../jobs/backup.js';
import type { OnError } from '../../jobs/error-policy.js';
import type { JobTxn } from '../../jobs/txn.js';
import type { QmpContext } from '../context.js';
import { QmpError } from '../error.js';
import { formatName, imageFileOptions, prepareImageFile } from './new-image.js';
import type { ArgsType } from '../schema/command.js';
import type { blockdevBackup, driveBackup as driveBackupCmd } from '../schema/backup.js';

type Args = ArgsType<typeof blockdevBackup>;
const fail = (desc: string) => new QmpError('GenericError', desc);

/** How a backup is set up besides its arguments. */
export interface BackupSetup {
  /** Runs at the end of the job's clean (drive-backup drops the target node it opened). */
  afterClean?: () => Promise<void>;
  /** The job transaction of a grouped `transaction`; a job of its own otherwise. */
  txn?: JobTxn;
}

/**
 * The bitmap arguments as do_backup_common checks them, in its order and
 * words: incremental becomes bitmap + on-success, the bitmap must be on
 * the source node and usable.
 */
function backupBitmap(a: Args, source: BlockNode): { sync: SyncMode; bitmap?: DirtyBitmap; mode?: BitmapMode } {
  let sync: Args['sync'] = a.sync;
  let mode = a['bitmap-mode'];
  if ((sync === 'incremental' || sync === 'bitmap') && a.bitmap === undefined) throw fail(`must provide a valid bitmap name for '${sync}' sync mode`);
  if (sync === 'incremental') {
    if (mode !== undefined && mode !== 'on-success') throw fail("Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
    sync = 'bitmap';
    mode = 'on-success';
  }
  let bitmap: DirtyBitmap | undefined;
  if (a.bitmap !== undefined) {
    bitmap = source.dirtyBitmaps.find(a.bitmap);
    if (!bitmap) throw fail(`Bitmap '${a.bitmap}' could not be found`);
    if (mode === undefined) throw fail('Bitmap sync mode must be given when providing a bitmap');
    bitmap.check(BitmapCheck.AllowReadOnly);
    if (sync === 'none') throw fail("sync mode 'none' does not produce meaningful bitmap outputs");
    if (mode === 'never' && sync !== 'bitmap') throw fail(`Bitmap sync mode 'never' has no meaningful effect when combined with sync mode '${sync}'`);
  }
  if (a.bitmap === undefined && mode !== undefined) throw fail('Cannot specify bitmap sync mode without a bitmap');
  return { sync, bitmap, mode };
}

/**
 * The checks of blockdev.c do_backup_common and backup_job_create, in
 * QEMU's order and words, then the job. A sync bitmap is frozen (a
 * successor records new writes) before the job exists, and thawed again
 * (reclaim) if the job cannot be set up. The job is created (and
 * copy-before-write is in place: the point in time is now) but not
 * started: a transaction starts its jobs only once every action is
 * prepared.
 */
export async function createBackup(ctx: QmpContext, a: Args, source: BlockNode, target: BlockNode, opts: BackupSetup = {}): Promise<BackupJob> {
  const { sync, bitmap, mode } = backupBitmap(a, source);
  if (source === target) throw fail('Source and target cannot be the same');
  if (a.compress && !target.supportsCompressedWrites) throw fail('Compression is not supported for this drive ');
  source.blockers.check(ctx.graph.backends.deviceOrNodeName(source), 'backup-source');
  target.blockers.check(ctx.graph.backends.deviceOrNodeName(target), 'backup-target');
  const perf = a['x-perf'];
  if (perf?.['max-workers'] !== undefined && (perf['max-workers'] < 1 || perf['max-workers'] > 2147483647)) throw fail('max-workers must be between 1 and 2147483647');
  if (perf?.['max-chunk'] !== undefined && perf['max-chunk'] < 0) throw fail('max-chunk must be zero (which means no limit) or positive');
  if (bitmap) {
    // The job writes the bitmap at its end unless the mode is never.
    if (mode !== 'never') bitmap.check(BitmapCheck.Default);
    bitmap.createSuccessor();
  }
  let filter: CopyBeforeWriteNode | undefined;
  // Named before the filter takes the source's place under its BlockBackend (QEMU names the job by the filter's parent).
  const deviceName = ctx.graph.backends.deviceName(source);
  try {
    if (source.size() !== target.size()) throw fail('Source and target image have different sizes');
    filter = await insertFilter(ctx, a['filter-node-name'], source, target);
    const clusterSize = backupClusterSize(target);
    if (perf?.['max-chunk'] && perf['max-chunk'] < clusterSize) throw fail(`Required max-chunk (${perf['max-chunk']}) is less than backup cluster size (${clusterSize})`);
    const id = a['job-id'] ?? deviceName;
    ctx.jobs.checkId(id);
    const f = filter;
    // The filter leaves the graph as the job ends, before drive-backup drops its target.
    const afterClean = async () => {
      await ctx.graph.removeFilter(f);
      await opts.afterClean?.();
    };
    const job = new BackupJob(id, ctx.jobEvents, {
      source,
      target,
      sync,
      syncBitmap: bitmap,
      bitmapMode: mode,
      // A negative speed fails the job once it exists (below); until then it does not limit.
      speed: (a.speed ?? 0) < 0 ? 0 : (a.speed ?? 0),
      compress: a.compress ?? false,
      onSourceError: a['on-source-error'] as OnError | undefined,
      onTargetError: a['on-target-error'] as OnError | undefined,
      // Both checked above; a chunk past 2^53 bytes is no limit either way.
      maxChunk: perf?.['max-chunk'] === undefined ? undefined : Number(perf['max-chunk']),
      maxWorkers: perf?.['max-workers'] === undefined ? undefined : Number(perf['max-workers']),
      copyBudget: ctx.jobs.copyBudget,
      autoFinalize: a['auto-finalize'],
      autoDismiss: a['auto-dismiss'],
      afterClean,
      filter,
      cbw: filter.cbwState,
      txn: opts.txn,
      clock: ctx.jobs.clock,
    });
    filter = undefined; // the job owns it now
    // The job's links come after it announced itself (block_job_create): a conflict fails it with created and null sent.
    try {
      await job.linkNodes();
    } catch (err) {
      await job.earlyFail();
      throw err;
    }
    // QEMU sets the speed after creating the job: a negative one fails it the same way.
    if ((a.speed ?? 0) < 0) {
      await job.earlyFail();
      throw fail("Parameter 'speed' expects a non-negative value");
    }
    ctx.jobs.add(job);
    return job;
  } catch (err) {
    if (filter) await ctx.graph.removeFilter(filter);
    bitmap?.reclaim();
    throw err;
  }
}

/**
 * bdrv_cbw_append (bdrv_insert_node): the copy-before-write filter opened
 * on the source and the target, named by filter-node-name or
 * automatically, then put in the source's place; its links check their
 * permissions as QEMU's do, with QEMU's words ("Could not create node: …",
 * "Could not replace node: …").
 */
async function insertFilter(ctx: QmpContext, name: string | undefined, source: BlockNode, target: BlockNode): Promise<CopyBeforeWriteNode> {
  let nodeName: string;
  try {
    nodeName = ctx.graph.assignName(name);
  } catch (err) {
    throw fail(`Could not create node: ${err instanceof Error ? err.message : String(err)}`);
  }
  const opening: ChildOwner = { nodeName, describe: () => `node '${nodeName}'` };
  return GraphTransaction.run(async (tran) => {
    let filter: CopyBeforeWriteNode;
    try {
      // Opened read-write (BDRV_O_RDWR) with no parents yet: it needs nothing of the source so far.
      const src = await attachChild(tran, opening, 'file', CHILD_FILTERED_PRIMARY, source, cbwChildPerm(CHILD_FILTERED_PRIMARY, true, false, 0, PERM_ALL));
      const tgt = await attachChild(tran, opening, 'target', CHILD_DATA, target, cbwChildPerm(CHILD_DATA, true, false, 0, PERM_ALL));
      // The block-copy the job will copy with (bdrv_cbw_append hands the filter's to backup_job_create).
      const state = new CbwState(new BlockCopy(source, target, backupClusterSize(target)), { onCbwError: 'break-guest-write', timeoutNs: 0, clock: ctx.jobs.clock });
      tran.addUndo(() => state.close());
      filter = new CopyBeforeWriteNode(nodeName, src, tgt, { state, copies: false });
      // Named by nobody: a reopen looks through it (bs->implicit).
      filter.implicit = name === undefined;
    } catch (err) {
      throw fail(`Could not create node: ${err instanceof Error ? err.message : String(err)}`);
    }
    ctx.graph.add(filter, false);
    tran.addUndo(() => ctx.graph.forget(filter));
    try {
      await replaceNode(tran, source, filter);
    } catch (err) {
      throw fail(`Could not replace node: ${err instanceof Error ? err.message : String(err)}`);
    }
    return filter;
  });
}

/** A prepared drive-backup: its job, and the target file if this command created it. */
export interface PreparedDriveBackup {
  job: BackupJob;
  createdFile: string | undefined;
}

/**
 * drive-backup (blockdev.c drive_backup_prepare): creates the target image
 * (unless mode=existing), opens it as an anonymous node with discard=unmap
 * and detect-zeroes=unmap, and sets up the backup into it; the node goes
 * away with the job. Unlike QEMU, a target file this command created is
 * removed again when the command fails, so a failed attempt leaves nothing
 * behind.
 */
export async function prepareDriveBackup(ctx: QmpContext, a: ArgsType<typeof driveBackupCmd>, txn?: JobTxn): Promise<PreparedDriveBackup> {
  const source = ctx.graph.find(a.device);
  ctx.jobs.drainNode(source);
  const mode = a.mode ?? 'absolute-paths';
  // sync=top starts below the source's filters, at its backing node; without one it is sync=full, as in QEMU.
  const below = a.sync === 'top' ? cowChild(skipFilters(source)) : undefined;
  const sync = a.sync === 'top' && !below ? 'full' : a.sync;
  // The new image's backing file: the source itself (none: fleecing) or its backing node (top).
  const base = sync === 'none' ? source : sync === 'top' ? below : undefined;
  const format = a.format ?? (mode === 'existing' ? undefined : formatName(source));
  const { createdFile, driver } = await prepareImageFile(a.target, mode, format, source.size(), base, ctx.printf);
  let target: BlockNode | undefined;
  try {
    // sync=none opens the target without its backing file and gives it the source instead (fleecing reads through to it);
    // sync=top opens the backing chain the new image names.
    target = await openBlockdev(
      ctx.graph,
      { driver, discard: 'unmap', 'detect-zeroes': 'unmap', ...imageFileOptions(driver, a.target), ...(driver === 'qcow2' && sync === 'none' ? { backing: null } : {}) },
      false,
    );
    const t = target;
    if (sync === 'none' && t.supportsBacking) await GraphTransaction.run((tran) => setBacking(tran, t, source));
    // The target goes away as the job finishes, before its last events.
    // Closing a node flushes it in QEMU (bdrv_close); a blockdev-backup target stays open and unflushed, as there.
    const afterClean = async () => {
      await t.flush().catch(() => undefined);
      await ctx.graph.discard(t);
    };
    const job = await createBackup(ctx, { ...a, sync }, source, target, { afterClean, txn });
    return { job, createdFile };
  } catch (err) {
    if (target) await ctx.graph.discard(target);
    if (createdFile !== undefined) await unlink(createdFile).catch(() => undefined);
    throw err;
  }
}


/** Undoes a prepared backup (a transaction's abort): the job is cancelled before it ever ran (QEMU: created, aborting, concluded, null). */
export async function cancelPreparedBackup(job: BackupJob): Promise<void> {
  if (job.status === 'null') return;
  await job.cancelLocked();
  if ((job.status as string) !== 'null') await job.removedPromise;
}

/** blockdev_backup_prepare: both nodes looked up, the source drained (jobs using it pause for a moment), then the job set up. */
export async function prepareBlockdevBackup(ctx: QmpContext, a: Args, txn?: JobTxn): Promise<BackupJob> {
  const source = ctx.graph.find(a.device);
  const target = ctx.graph.find(a.target);
  ctx.jobs.drainNode(source);
  return createBackup(ctx, a, source, target, { txn });
}
