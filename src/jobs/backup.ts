import type { DirtyBitmap } from '../blockdev/dirty-bitmap.js';
import type { CopyBudget } from './copy-budget.js';
import type { BlockNode } from '../blockdev/node.js';
import { PERM_ALL } from '../image/perm.js';
import { strerror } from '../image/errno.js';
import { BlockCopy, blockCopyClusterSize, CopyError } from '../blockdev/block-copy.js';
import type { CbwState } from '../blockdev/drivers/cbw-state.js';
import { BlockJob, type BlockJobListener, type BlockJobOptions } from './block-job.js';
import type { OnError } from './error-policy.js';

export type SyncMode = 'full' | 'top' | 'none' | 'bitmap';
/** What becomes of the sync bitmap when the job ends (BitmapSyncMode). */
export type BitmapMode = 'on-success' | 'never' | 'always';

/** The listener of backup jobs: any block job's. */
export type BackupListener = BlockJobListener;

export interface BackupOptions extends BlockJobOptions {
  source: BlockNode;
  target: BlockNode;
  sync: SyncMode;
  compress?: boolean;
  onSourceError?: OnError;
  onTargetError?: OnError;
  maxChunk?: number;
  /** Copy tasks in flight at most (x-perf max-workers); MAX_TASKS when absent. */
  maxWorkers?: number;
  /** The daemon's copy budget, a share of which pays for each task buffer (none: no limit but maxWorkers). */
  copyBudget?: CopyBudget;
  /**
   * The bitmap of sync=bitmap (or of full/top that re-anchor it), already
   * frozen by its caller (createSuccessor): the job settles it at the end.
   */
  syncBitmap?: DirtyBitmap;
  bitmapMode?: BitmapMode;
  /** The copy-before-write filter node set above the source for this job (its parents' drains reach the job). */
  filter?: BlockNode;
  /**
   * The filter's state: the job copies with its block-copy (as QEMU's
   * backup copies with the bcs bdrv_cbw_append made), so what the guest's
   * writes copy shows in the filter's bitmaps and a snapshot-access node
   * over the filter reads the job's point in time. Without it (a job made
   * by hand) the job has a block-copy of its own.
   */
  cbw?: CbwState;
  /** Runs at the end of clean (drive-backup drops the target node it opened). */
  afterClean?: () => Promise<void>;
}

/**
 * Copy tasks in flight at most. QEMU allows 64 (x-perf max-workers); with
 * 1 MiB tasks, 16 already keep libuv's four I/O threads busy, at a quarter
 * of the buffer memory.
 */
export const MAX_TASKS = 16;

/** The backup cluster: block-copy's. */
export const backupClusterSize = blockCopyClusterSize;

/**
 * A backup job (block/backup.c): the target becomes the source as it was
 * when the job started. Copy-before-write hangs on the source, so every
 * write to it first copies the old clusters; the background pass copies
 * the rest (full), only what the top layer allocates (top), or nothing
 * (none). I/O errors go through on-source-error / on-target-error.
 */
export class BackupJob extends BlockJob {
  readonly source: BlockNode;
  readonly target: BlockNode;
  readonly sync: SyncMode;
  readonly copier: BlockCopy;
  private readonly onSourceError: OnError;
  private readonly onTargetError: OnError;
  private readonly hook: (offset: number, length: number) => Promise<void>;
  private readonly afterClean: (() => Promise<void>) | undefined;
  private readonly filter: BlockNode | undefined;
  private readonly maxTasks: number;
  private readonly copyBudget: CopyBudget | undefined;
  private readonly syncBitmap: DirtyBitmap | undefined;
  private readonly bitmapMode: BitmapMode;
  /** The copy bitmap as the source node lists it while the job exists (the filter's state lists it when there is one). */
  private readonly copyBitmapEntry: DirtyBitmap | undefined;

  constructor(id: string, events: BackupListener, opts: BackupOptions) {
    super(id, 'backup', events, opts);
    this.source = opts.source;
    this.target = opts.target;
    this.sync = opts.sync;
    this.onSourceError = opts.onSourceError ?? 'report';
    this.onTargetError = opts.onTargetError ?? 'report';
    this.afterClean = opts.afterClean;
    this.filter = opts.filter;
    this.maxTasks = opts.maxWorkers ?? MAX_TASKS;
    this.copyBudget = opts.copyBudget;
    const copyOpts = { compress: opts.compress, maxChunk: opts.maxChunk, sequential: this.maxTasks === 1, onProgress: (n: number) => (this.progressCurrent += n) };
    this.copier = opts.cbw?.bcs ?? new BlockCopy(this.source, this.target, backupClusterSize(this.target));
    this.copier.setOptions(copyOpts);
    this.syncBitmap = opts.syncBitmap;
    this.bitmapMode = opts.bitmapMode ?? 'on-success';
    // sync=bitmap copies exactly the frozen bitmap's clusters (backup_init_bcs_bitmap); everything else starts all dirty.
    this.copier.bitmap.clearAll();
    if (this.sync === 'bitmap' && this.syncBitmap) this.copier.bitmap.mergeAny(this.syncBitmap.bits);
    else this.copier.bitmap.setAll();
    this.progressTotal = this.copier.bitmap.dirtyBytes;
    this.copyBitmapEntry = opts.cbw ? undefined : this.source.dirtyBitmaps.attach(this.copier.bitmap);
    // Copy-before-write from the moment the job exists: the point in time is now. Through the filter's state, what is
    // copied is marked done there and waits for the filter's fleecing readers, as cbw_do_copy_before_write does.
    const cbw = opts.cbw;
    this.hook = cbw ? (offset, length) => cbw.copyBeforeWrite(offset, length) : (offset, length) => this.copier.copyBeforeWrite(offset, length);
    this.source.beforeWrite.push(this.hook);
  }

  /**
   * The job's links (block_job_create's "main node" on the filter and
   * block_job_add_bdrv's "target"): taking nothing, sharing everything —
   * the filter's own links carry the permissions — but blocking other
   * operations on both. The source is not blocked: a second backup of it
   * is allowed, as in QEMU.
   */
  async linkNodes(): Promise<void> {
    if (this.filter) await this.nodes.add('main node', this.filter, 0, PERM_ALL);
    await this.nodes.add('target', this.target, 0, PERM_ALL);
  }

  /**
   * QEMU's backup waits for its block-copy call in job_yield (not busy); a pause wakes it, and it is
   * busy in backup_pause until the copies in flight are done and it parks at its pause point.
   */
  override get busy(): boolean {
    return this.status === 'running' && this.paused;
  }

  override usesNode(node: object): boolean {
    return node === this.source || node === this.target || node === this.filter;
  }

  protected async run(): Promise<void> {
    if (this.sync === 'none') {
      // Only copy-before-write works; the job idles until cancelled.
      for (;;) await this.waitForKick();
    }
    if (this.sync === 'top') await this.skipUnallocated();
    for (;;) {
      const err = await this.copyPass();
      if (err) await this.handleError(err);
      else if (this.copier.bitmap.count === 0) break;
    }
    // Copies started by guest writes finish before the job does.
    await this.copier.drain();
  }

  /**
   * One pass over the copy bitmap with up to maxTasks copies in flight
   * (block_copy_dirty_clusters' task pool). Rate limiting asks before each
   * task and charges the whole task. A pause or cancel, and the first
   * failure, stop new tasks; those in flight finish first, as QEMU's pool
   * does. Returns the first failure (the others are dropped: their
   * clusters stay dirty for a later pass).
   */
  /** The background pass's copies in flight. */
  private readonly tasks = new Set<Promise<void>>();

  /**
   * backup_pause cancels the block-copy call and waits for its copies in flight: the job parks only
   * after them (wherever it reaches its pause point, in a rate-limit sleep too), so a paused job's
   * offset stays put (iotest 055).
   */
  protected override async pausePoint(): Promise<void> {
    if ((this.paused || this.cancelled) && this.tasks.size > 0) await Promise.allSettled(this.tasks);
    return super.pausePoint();
  }

  private async copyPass(): Promise<CopyError | undefined> {
    const tasks = this.tasks;
    let failure: CopyError | undefined;
    let fatal: { err: unknown } | undefined;
    let cursor = 0;
    // Woken when a task ends and frees a slot. Promise.race over the pool would hang a reaction on every task in
    // flight for each task started: 64 per MiB, most of a sparse backup's garbage.
    let slotFreed: (() => void) | undefined;
    try {
      while (failure === undefined && fatal === undefined) {
        await this.pausePoint();
        for (let d = this.limiter.delay(0); d > 0; d = this.limiter.delay(0)) await this.sleep(d);
        if (failure !== undefined || fatal !== undefined) break;
        // Each task in flight holds a buffer paid for by a share of the daemon's copy budget, kept (with its buffer)
        // until the pass ends; a job's first share is taken even past the budget, so every job moves. With no share
        // to be had, the job waits for one of its own tasks (never for another job's), then looks again.
        if (tasks.size >= this.budgetShares && !this.takeShare(tasks.size === 0)) {
          await new Promise<void>((resolve) => (slotFreed = resolve));
          slotFreed = undefined;
          continue;
        }
        // Unthrottled, a task of zeroes may take the zeroes after it (BlockCopy.extendZeroRun); throttled, every MiB is charged as QEMU charges it.
        const task = this.copier.startNext(cursor, { zeroRuns: !this.limiter.limited });
        if (!task) break;
        cursor = task.end;
        this.limiter.delay((task.end - task.first) * this.copier.clusterSize);
        const t: Promise<void> = this.trackIo(task.done)
          .catch((err: unknown) => {
            if (err instanceof CopyError) failure ??= err;
            else fatal ??= { err };
          })
          .finally(() => {
            tasks.delete(t);
            slotFreed?.();
          });
        tasks.add(t);
        if (tasks.size >= this.maxTasks) await new Promise<void>((resolve) => (slotFreed = resolve));
        slotFreed = undefined;
      }
    } finally {
      await Promise.allSettled(tasks);
      this.returnShares();
    }
    if (fatal) throw fatal.err;
    return failure;
  }

  /** Shares of the daemon's copy budget this job holds (each paid for one of its task buffers). */
  private budgetShares = 0;

  private takeShare(first: boolean): boolean {
    if (!this.copyBudget) return true;
    if (!this.copyBudget.tryTake(this.copier.taskBytes, first)) return false;
    this.budgetShares++;
    return true;
  }

  /** The pass is over: the shares go back, and the buffers they paid for leave the job's pool. */
  private returnShares(): void {
    if (!this.copyBudget || this.budgetShares === 0) return;
    this.copyBudget.give(this.budgetShares * this.copier.taskBytes);
    this.copier.dropBuffers(this.budgetShares);
    this.budgetShares = 0;
  }

  /**
   * sync=top: clusters the top layer does not allocate itself — holes, and
   * what reads through to the backing chain (depth > 0) — are not copied
   * and not counted (block_copy_reset_unallocated, bdrv_is_allocated).
   */
  private async skipUnallocated(): Promise<void> {
    const cs = this.copier.clusterSize;
    for (let off = 0; off < this.source.size(); ) {
      await this.pausePoint();
      const st = await this.source.blockStatus(off, this.source.size() - off);
      if (!st.allocated || st.depth > 0) {
        const first = Math.ceil(off / cs);
        const end = off + st.length === this.source.size() ? this.copier.bitmap.chunks : Math.floor((off + st.length) / cs);
        for (let c = first; c < end; c++) this.copier.bitmap.clear(c);
      }
      off += st.length;
    }
    this.progressTotal = this.copier.bitmap.dirtyBytes;
  }

  /** The error policy: report fails the job; ignore retries in a new pass; stop pauses until resumed. */
  private async handleError(err: CopyError): Promise<void> {
    const action = this.errorAction(err.operation === 'read' ? this.onSourceError : this.onTargetError, err.operation, err.errno);
    if (action === 'report') throw new Error(strerror(err.errno));
    if (action === 'stop') await this.pausePoint();
  }

  /** Success: backup_cleanup_sync_bitmap(job, 0). */
  override async commit(): Promise<void> {
    this.settleSyncBitmap(true);
  }

  /** Failure or cancel: backup_cleanup_sync_bitmap(job, -1). */
  override async abort(): Promise<void> {
    this.settleSyncBitmap(false);
  }

  /**
   * on-success and always hand the bitmap's name to the successor (only the
   * writes since the job started) when the job succeeded, always also when
   * it failed, adding back the clusters it did not copy; otherwise the
   * successor's bits are merged back into the bitmap and nothing is lost.
   */
  private settleSyncBitmap(ok: boolean): void {
    const bm = this.syncBitmap;
    if (!bm?.successor) return;
    const hand = (ok || this.bitmapMode === 'always') && this.bitmapMode !== 'never';
    const kept = hand ? bm.abdicate() : bm.reclaim();
    if (!ok && this.bitmapMode === 'always') kept.bits.mergeAny(this.copier.bitmap);
  }

  override async clean(): Promise<void> {
    if (this.copyBitmapEntry) this.source.dirtyBitmaps.release(this.copyBitmapEntry);
    const i = this.source.beforeWrite.indexOf(this.hook);
    if (i >= 0) this.source.beforeWrite.splice(i, 1);
    await this.nodes.removeAll();
    await this.afterClean?.();
  }
}
