import type { DirtyBitmap } from '../blockdev/dirty-bitmap.js';
import type { BlockNode } from '../blockdev/node.js';
import { strerror } from '../blockdev/qemu-io/errno.js';
import { BlockCopy, CopyError } from './block-copy.js';
import { Job, type JobListener, type JobOptions } from './job.js';
import { RateLimiter } from './rate-limit.js';

export type SyncMode = 'full' | 'top' | 'none' | 'bitmap';
/** What becomes of the sync bitmap when the job ends (BitmapSyncMode). */
export type BitmapMode = 'on-success' | 'never' | 'always';
export type OnError = 'report' | 'ignore' | 'enospc' | 'stop' | 'auto';
export type ErrorAction = 'report' | 'ignore' | 'stop';
export type IoStatus = 'ok' | 'failed' | 'nospace';

export interface BackupListener extends JobListener {
  /** BLOCK_JOB_ERROR: emitted once per error the policy handles, before the job acts on it. */
  ioError(job: BackupJob, operation: 'read' | 'write', action: ErrorAction): void;
}

export interface BackupOptions extends JobOptions {
  source: BlockNode;
  target: BlockNode;
  sync: SyncMode;
  /** Bytes per second, 0 for no limit; exact as QMP gave it (an int64 may pass 2^53), reported back as given. */
  speed?: number | bigint;
  compress?: boolean;
  onSourceError?: OnError;
  onTargetError?: OnError;
  maxChunk?: number;
  /** Copy tasks in flight at most (x-perf max-workers); MAX_TASKS when absent. */
  maxWorkers?: number;
  /**
   * The bitmap of sync=bitmap (or of full/top that re-anchor it), already
   * frozen by its caller (createSuccessor): the job settles it at the end.
   */
  syncBitmap?: DirtyBitmap;
  bitmapMode?: BitmapMode;
  /** The copy-before-write filter node set above the source for this job (its parents' drains reach the job). */
  filter?: BlockNode;
  /** Runs at the end of clean (drive-backup drops the target node it opened). */
  afterClean?: () => Promise<void>;
}

/** blockjob.c block_job_error_action: the policy and the errno decide. */
export function errorAction(policy: OnError, errno: string): ErrorAction {
  switch (policy) {
    case 'enospc':
    case 'auto':
      return errno === 'ENOSPC' ? 'stop' : 'report';
    default:
      return policy;
  }
}

/**
 * Copy tasks in flight at most. QEMU allows 64 (x-perf max-workers); with
 * 1 MiB tasks, 16 already keep libuv's four I/O threads busy, at a quarter
 * of the buffer memory.
 */
export const MAX_TASKS = 16;

/** The backup cluster: max(64 KiB, the target's cluster size) (block_copy_calculate_cluster_size). */
export function backupClusterSize(target: BlockNode): number {
  const info = (target as unknown as { info?: () => { clusterSize?: number } }).info?.();
  return Math.max(65536, info?.clusterSize ?? 0);
}

/**
 * A backup job (block/backup.c): the target becomes the source as it was
 * when the job started. Copy-before-write hangs on the source, so every
 * write to it first copies the old clusters; the background pass copies
 * the rest (full), only what the top layer allocates (top), or nothing
 * (none). I/O errors go through on-source-error / on-target-error.
 */
export class BackupJob extends Job {
  readonly source: BlockNode;
  readonly target: BlockNode;
  readonly sync: SyncMode;
  readonly copier: BlockCopy;
  readonly limiter: RateLimiter;
  speed: number | bigint;
  ioStatus: IoStatus = 'ok';
  private readonly onSourceError: OnError;
  private readonly onTargetError: OnError;
  private readonly hook: (offset: number, length: number) => Promise<void>;
  private readonly afterClean: (() => Promise<void>) | undefined;
  private readonly filter: BlockNode | undefined;
  private readonly maxTasks: number;
  private readonly syncBitmap: DirtyBitmap | undefined;
  private readonly bitmapMode: BitmapMode;
  /** The copy bitmap as the source node lists it while the job exists. */
  private readonly copyBitmapEntry: DirtyBitmap;

  constructor(
    id: string,
    private readonly events: BackupListener,
    opts: BackupOptions,
  ) {
    super(id, 'backup', events, opts);
    this.source = opts.source;
    this.target = opts.target;
    this.sync = opts.sync;
    this.speed = opts.speed ?? 0;
    this.limiter = new RateLimiter(Number(this.speed), () => this.clock.now());
    this.onSourceError = opts.onSourceError ?? 'report';
    this.onTargetError = opts.onTargetError ?? 'report';
    this.afterClean = opts.afterClean;
    this.filter = opts.filter;
    this.maxTasks = opts.maxWorkers ?? MAX_TASKS;
    this.copier = new BlockCopy(this.source, this.target, backupClusterSize(this.target), {
      compress: opts.compress,
      maxChunk: opts.maxChunk,
      onProgress: (n) => (this.progressCurrent += n),
    });
    this.syncBitmap = opts.syncBitmap;
    this.bitmapMode = opts.bitmapMode ?? 'on-success';
    // sync=bitmap copies exactly the frozen bitmap's clusters (backup_init_bcs_bitmap); everything else starts all dirty.
    if (this.sync === 'bitmap' && this.syncBitmap) this.copier.bitmap.mergeAny(this.syncBitmap.bits);
    else this.copier.bitmap.setAll();
    this.progressTotal = this.copier.bitmap.dirtyBytes;
    this.copyBitmapEntry = this.source.dirtyBitmaps.attach(this.copier.bitmap);
    // Copy-before-write from the moment the job exists: the point in time is now.
    this.hook = (offset, length) => this.copier.copyBeforeWrite(offset, length);
    this.source.beforeWrite.push(this.hook);
    this.source.ref();
    this.target.ref();
    // The job holds its filter as QEMU's holds the cbw node: deleting a parent above it does not take it away.
    this.filter?.ref();
    // QEMU blocks operations on the target (and the filter), not on the source: a second backup of it is allowed.
    this.target.busyWith = 'block job: backup';
  }

  override usesNode(node: object): boolean {
    return node === this.source || node === this.target || node === this.filter;
  }

  setSpeed(speed: number | bigint): void {
    this.checkVerb('set-speed');
    this.speed = speed;
    // QEMU's slice quota is a double too (ratelimit_set_speed).
    this.limiter.setSpeed(Number(speed));
    this.kick();
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
  private async copyPass(): Promise<CopyError | undefined> {
    const tasks = new Set<Promise<void>>();
    let failure: CopyError | undefined;
    let fatal: { err: unknown } | undefined;
    let cursor = 0;
    try {
      while (failure === undefined && fatal === undefined) {
        if (this.paused || this.cancelled) await Promise.allSettled(tasks);
        await this.pausePoint();
        for (let d = this.limiter.delay(0); d > 0; d = this.limiter.delay(0)) await this.sleep(d);
        if (failure !== undefined || fatal !== undefined) break;
        const task = this.copier.startNext(cursor);
        if (!task) break;
        cursor = task.end;
        this.limiter.delay((task.end - task.first) * this.copier.clusterSize);
        const t: Promise<void> = task.done
          .catch((err: unknown) => {
            if (err instanceof CopyError) failure ??= err;
            else fatal ??= { err };
          })
          .finally(() => tasks.delete(t));
        tasks.add(t);
        if (tasks.size >= this.maxTasks) await Promise.race(tasks);
      }
    } finally {
      await Promise.allSettled(tasks);
    }
    if (fatal) throw fatal.err;
    return failure;
  }

  /** sync=top: clusters the top layer does not allocate are not copied (and not counted). */
  private async skipUnallocated(): Promise<void> {
    const cs = this.copier.clusterSize;
    for (let off = 0; off < this.source.size(); ) {
      await this.pausePoint();
      const st = await this.source.blockStatus(off, this.source.size() - off);
      if (!st.allocated) {
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
    const action = errorAction(err.operation === 'read' ? this.onSourceError : this.onTargetError, err.errno);
    this.events.ioError(this, err.operation, action);
    if (action === 'report') throw new Error(strerror(err.errno));
    if (action === 'stop') {
      if (this.ioStatus === 'ok') this.ioStatus = err.errno === 'ENOSPC' ? 'nospace' : 'failed';
      // Paused as if by the user: job-resume lifts it (and resets io-status).
      this.userPaused = true;
      this.pause();
      await this.pausePoint();
    }
  }

  override userResume(): void {
    super.userResume();
    this.ioStatus = 'ok';
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
    this.source.dirtyBitmaps.release(this.copyBitmapEntry);
    const i = this.source.beforeWrite.indexOf(this.hook);
    if (i >= 0) this.source.beforeWrite.splice(i, 1);
    this.source.unref();
    this.target.unref();
    this.filter?.unref();
    this.target.busyWith = undefined;
    await this.afterClean?.();
  }
}
