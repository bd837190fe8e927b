import { ChunkBitmap } from '../blockdev/bitmap.js';
import type { BlockBackend } from '../blockdev/block-backend.js';
import type { DirtyBitmap } from '../blockdev/dirty-bitmap.js';
import type { ActiveWrite, MirrorTopJob, MirrorTopNode } from '../blockdev/drivers/mirror-top.js';
import type { BlockNode } from '../blockdev/node.js';
import { SizedBufferPool } from '../image/buffer-pool.js';
import { strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import type { Extent } from '../image/types.js';
import { BlockJob, type BlockJobListener } from './block-job.js';
import type { OnError } from './error-policy.js';
import type { JobOptions } from './job.js';
import { type PieceRules, type Span, writePiecesOf } from './mirror-pieces.js';
import { WritebackHints } from '../blockdev/writeback.js';

/** MIRROR_COPY_MODE_*: writes are only tracked, or also copied before they complete. */
export type CopyMode = 'background' | 'write-blocking';

/** MAX_IN_FLIGHT and MAX_IO_BYTES of block/mirror.c. */
export const MIRROR_MAX_IN_FLIGHT = 16;
const MAX_IO_BYTES = 1 << 20;
export const DEFAULT_MIRROR_BUF_SIZE = MIRROR_MAX_IN_FLIGHT * MAX_IO_BYTES;

export type MirrorListener = BlockJobListener;

/** What the job does to the graph as it ends (mirror_exit_common), given by whoever set it up. */
export interface MirrorExit {
  /** Called with the job's outcome once the target is no longer written: backing links, the pivot, the filter's removal. */
  finish(job: MirrorJob, abort: boolean): Promise<void>;
}

export interface MirrorOptions extends JobOptions {
  /** 'mirror', or 'commit' for an active commit (the same engine). */
  jobType: 'mirror' | 'commit';
  filter: MirrorTopNode;
  source: BlockNode;
  target: BlockNode;
  /** The job's access to the target (its BlockBackend): written through, removed first as the job ends. */
  targetBackend: BlockBackend;
  /** Only what lies above this node is copied (sync=top, commit); none: the whole chain. */
  baseDepth?: number;
  /** Where the shortest layer between the source and the base ends: past it, everything counts as above the base. */
  shortLayerEnd?: number;
  /** sync=none: nothing is copied but what is written during the job. */
  noneMode: boolean;
  granularity: number;
  bufSize: number;
  /** The target's cluster size (bdrv_get_info), 0 for none: asked before the job starts, so its first copies go out before anything else can happen (as QEMU's, which asks without I/O). */
  targetCluster: number;
  /** Copies are widened to whole target clusters until each chunk has been written once (mirror_cow_align). */
  cowRounding?: boolean;
  speed: number | bigint;
  onSourceError: OnError;
  onTargetError: OnError;
  unmap: boolean;
  /** The target must be zeroed first (sync=full into a target that may hold data). */
  zeroTarget: boolean;
  copyMode: CopyMode;
  /** The node a completion puts the target in place of (replaces), by name; the source if none. */
  replaces?: string;
  /** Completes by itself once in sync (QEMU's auto_complete: commit jobs of the block layer). */
  autoComplete?: boolean;
  exit: MirrorExit;
  /** Looks a node up by name at completion (replaces). */
  findNode(name: string): BlockNode | undefined;
  /** Runs at the end of clean (drive-mirror drops a target the job did not put in place). */
  afterClean?: () => Promise<void>;
}

/**
 * A mirror job (block/mirror.c): the target becomes a copy of the source
 * and stays one. A dirty bitmap on the source records what is still to be
 * copied — everything at first (or what the chain above the base
 * allocates), then every write the source gets while the job runs. Once
 * bitmap and in-flight copies are empty the job is `ready`
 * (BLOCK_JOB_READY) and keeps copying new writes until job-complete pivots
 * the graph onto the target, or a cancel ends it without the pivot (a soft
 * cancel of a ready job completes; before ready every cancel is forced).
 */
export class MirrorJob extends BlockJob implements MirrorTopJob {
  readonly source: BlockNode;
  readonly target: BlockNode;
  readonly filter: MirrorTopNode;
  readonly granularity: number;
  /** What is still to copy; every write to the source marks it (a disabled one for write-blocking: writes are copied as they happen). */
  readonly dirty: ChunkBitmap;
  private readonly dirtyEntry: DirtyBitmap;
  private readonly opts: MirrorOptions;
  /** Chunks a copy or an active write is working on, and the work: others wait for it (in_flight_bitmap). */
  private readonly busyChunks = new Map<number, Promise<void>>();
  /** Background operations in flight (not active writes), and their bytes. */
  private readonly ops = new Set<Promise<void>>();
  private bytesInFlight = 0;
  /** Bytes of copy buffers the operations in flight hold (buf-size minus QEMU's buf_free_count chunks). */
  private bufferedBytes = 0;
  private activeBytesInFlight = 0;
  private cursor = 0;
  /** The first error the policy reports: the job fails with it (s->ret). */
  private failure: Error | undefined;
  shouldComplete: boolean;
  private toReplace: BlockNode | undefined;
  private prepared = false;
  private initialZeroing = false;
  /** The target is in sync and every write is copied as it happens (write-blocking after ready). */
  activelySynced = false;
  private readonly writeZeroesOk: boolean;
  /** The target's cluster size (0: none), for zero writes that must cover whole clusters. */
  private readonly targetCluster: number;
  /** Waiting in sync for a write to copy (a write wakes it; a rate-limit sleep it must not cut short). */
  private inSyncWait = false;
  private readonly maxIoBytes: number;
  /** Copy buffers, reused as QEMU's buf_free list is: fresh ones cost page faults and the collector's time. */
  private readonly buffers: SizedBufferPool;
  /** Iterations since the loop last let the event loop turn. */
  private unyielded = 0;
  /** The disk starts on the copied data while the copy goes on, so the flush before READY is short. */
  private readonly writeback: WritebackHints;
  private readonly pieceRules: PieceRules;
  /** The chunks written to the target so far, while copies must cover whole target clusters (s->cow_bitmap). */
  private readonly cowChunks: ChunkBitmap | undefined;

  constructor(
    id: string,
    events: MirrorListener,
    opts: MirrorOptions,
  ) {
    super(id, opts.jobType, events, opts);
    this.opts = opts;
    this.source = opts.source;
    this.target = opts.target;
    this.filter = opts.filter;
    this.granularity = opts.granularity;
    this.targetCluster = opts.targetCluster;
    this.shouldComplete = opts.autoComplete ?? false;
    this.dirty = new ChunkBitmap(this.source.size(), this.granularity);
    if (opts.cowRounding) this.cowChunks = new ChunkBitmap(this.source.size(), this.granularity);
    // An anonymous bitmap of the source, as query-named-block-nodes shows it while the job runs.
    this.dirtyEntry = this.source.dirtyBitmaps.attach(this.dirty, opts.copyMode === 'background');
    this.dirtyEntry.onMark = () => {
      if (this.inSyncWait) this.kick();
    };
    // bdrv_can_write_zeroes_with_unmap: zeroes then cost nothing and are not charged to the rate limit.
    this.writeZeroesOk = this.target.settings.discard === 'unmap';
    this.maxIoBytes = Math.max(Math.floor(opts.bufSize / MIRROR_MAX_IN_FLIGHT), MAX_IO_BYTES);
    this.buffers = new SizedBufferPool(opts.bufSize);
    this.writeback = new WritebackHints(this.target);
    this.pieceRules = { granularity: this.granularity, unmap: opts.unmap, zeroAllowed: (o, l) => this.coversClusters(o, l) };
    this.filter.job = this;
  }

  /** A mirror is set up with its source drained before the job exists: no paused/running pair. */
  protected override get drainsOnStart(): boolean {
    return false;
  }
  /** block-job-cancel answers at once; the job's events follow. */
  protected override get cancelWaitsForConclusion(): boolean {
    return false;
  }
  /** mirror_cancel / commit_active_cancel: before ready every cancel is forced. */
  protected override cancelIsForced(force: boolean): boolean {
    return force || !this.isReady;
  }

  /** mirror_pause (mirror_wait_for_all_io): a pause parks the job only once its copies in flight are done. */
  protected override async pausePoint(): Promise<void> {
    if (this.paused && !this.cancelled && this.ops.size > 0) await Promise.allSettled([...this.ops]);
    return super.pausePoint();
  }

  /** Working (copying, or about to) rather than sleeping on its rate limit or waiting in sync. */
  override get busy(): boolean {
    return (this.status === 'running' || this.status === 'ready') && !this.isIdle;
  }

  override usesNode(node: object): boolean {
    return node === this.source || node === this.target || node === this.filter;
  }

  /** mirror_complete: `replaces` is looked up now and blocked for everything else until the job ends. */
  protected override onComplete(): boolean {
    if (this.opts.replaces !== undefined) {
      const node = this.opts.findNode(this.opts.replaces);
      if (!node) throw new BlockError('NOT_FOUND', `Node name '${this.opts.replaces}' not found`);
      this.toReplace = node;
      node.blockers.add(REPLACE_BLOCKER);
    }
    this.shouldComplete = true;
    if (!this.paused) this.kick();
    return true;
  }

  /** The node the target takes the place of at completion. */
  get replaced(): BlockNode {
    return this.toReplace ?? this.source;
  }

  copiesActively(): boolean {
    return this.failure === undefined && !this.cancelled && this.opts.copyMode === 'write-blocking';
  }

  protected async run(): Promise<void> {
    try {
      await this.mirror();
    } finally {
      // The source stays drained from here until the graph is changed (mirror_run's need_drain): query-block-jobs says paused.
      this.pause();
      await Promise.allSettled([...this.ops]);
    }
  }

  private async mirror(): Promise<void> {
    if (this.cancelled) return;
    const length = this.source.size();
    const targetLength = this.target.size();
    if (this.opts.baseDepth !== undefined && this.opts.jobType === 'commit') {
      // Active commit: a smaller base grows to the top's size.
      if (length > targetLength) await this.target.resize(length);
    } else if (length !== targetLength) {
      throw new Error('Source and target image have different sizes');
    }
    if (length === 0) {
      this.toReady();
      while (!this.cancelRequested && !this.shouldComplete) await this.waitForKick();
      return;
    }
    if (!this.opts.noneMode) {
      await this.dirtyInit();
      if (this.cancelled) return;
    }
    for (;;) {
      if (this.failure) throw this.failure;
      await this.pausePoint();
      let cnt = this.dirty.dirtyBytes;
      this.progressTotal = this.progressCurrent + this.bytesInFlight + cnt + this.activeBytesInFlight;
      let delay = 0;
      if (this.ops.size >= MIRROR_MAX_IN_FLIGHT || this.bufferedBytes >= this.opts.bufSize || (cnt === 0 && this.ops.size > 0)) {
        await Promise.race(this.ops);
        continue;
      } else if (cnt !== 0) {
        delay = await this.iteration();
      }
      let complete = false;
      if (this.ops.size === 0 && cnt === 0) {
        if (!this.isReady) {
          if (!(await this.flushTarget())) continue;
          this.toReady();
        }
        complete = this.shouldComplete || this.cancelRequested;
        cnt = this.dirty.dirtyBytes;
      }
      if (cnt === 0 && complete) {
        // The last check with the source quiet: anything written meanwhile means another round.
        if (this.dirty.dirtyBytes > 0 || !(await this.flushTarget())) continue;
        return;
      }
      if (this.isReady && !complete) {
        if (this.ops.size === 0 && cnt === 0) {
          // In sync: nothing to do until the source is written or a verb arrives.
          this.inSyncWait = true;
          try {
            await this.waitForKick();
          } finally {
            this.inSyncWait = false;
          }
          continue;
        }
        delay = 0;
      }
      await this.sleepAfterIteration(delay);
    }
  }

  /**
   * job_sleep_ns(delay) at the end of a round. Without a delay and with
   * copies in flight the round's turn of the event loop is skipped (their
   * I/O lets it turn): the next rounds' requests then go out in the same
   * turn, where the file merges adjacent ones — sixteen 64 KiB copies of a
   * half-allocated image cost one read and one write instead of sixteen
   * each. Every MAX_IN_FLIGHT rounds the job yields all the same, so
   * copies that need no I/O (zeroes into cached tables) cannot starve the
   * monitor.
   */
  private async sleepAfterIteration(delay: number): Promise<void> {
    if (delay === 0 && this.ops.size > 0 && ++this.unyielded < MIRROR_MAX_IN_FLIGHT) return this.skipSleep();
    this.unyielded = 0;
    await this.sleep(delay);
  }

  private toReady(): void {
    this.transitionToReady();
    if (this.opts.copyMode === 'write-blocking') this.activelySynced = true;
  }

  /**
   * mirror_dirty_init: a target that may hold data is zeroed first (when
   * the target can do that cheaply; otherwise everything is copied), then
   * what the source's chain allocates above the base is marked.
   */
  private async dirtyInit(): Promise<void> {
    const size = this.source.size();
    if (this.opts.zeroTarget) {
      if (!this.writeZeroesOk) {
        this.dirty.setAll();
        return;
      }
      this.initialZeroing = true;
      const step = Math.floor(0x7fffffff / this.granularity) * this.granularity;
      for (let off = 0; off < size; off += step) {
        await this.pausePoint();
        if (this.cancelled) break;
        while (this.ops.size >= MIRROR_MAX_IN_FLIGHT) await Promise.race(this.ops);
        this.zeroTargetRange(off, Math.min(step, size - off));
      }
      await Promise.allSettled([...this.ops]);
      this.initialZeroing = false;
      if (this.cancelled) return;
    }
    const baseDepth = this.opts.baseDepth;
    // A slice at a time from the image's tables (a pause or cancel is seen between slices).
    const SLICE = 64 << 20;
    for (let off = 0; off < size; ) {
      await this.pausePoint();
      const runs = await this.source.blockStatusRuns(off, Math.min(SLICE, size - off), { wantZero: false });
      if (runs.length === 0) break;
      for (const st of runs) if (st.allocated && (baseDepth === undefined || st.depth < baseDepth)) this.dirty.setRange(st.offset, st.length);
      off = runs[runs.length - 1]!.offset + runs[runs.length - 1]!.length;
    }
    const short = this.opts.shortLayerEnd;
    if (short !== undefined && short < size) this.dirty.setRange(short, size - short);
  }

  /**
   * mirror_iteration: from the next dirty chunk, a run of dirty chunks no
   * copy is working on (up to the buffer size) is taken off the bitmap and
   * copied by block status: data is read and written, zero areas covering
   * whole target clusters are written as zeroes (where they do not, they
   * are copied as data, as bdrv_round_to_clusters makes QEMU do). QEMU
   * sends one request per extent; here an operation takes the extents of
   * up to max-io bytes together and writes them as one request of pieces
   * (a half-allocated image alternates every cluster: per-extent requests
   * would cost far more than the data). Returns how long the rate limit
   * wants the job to wait.
   */
  private async iteration(): Promise<number> {
    const g = this.granularity;
    let first = this.dirty.nextSet(this.cursor);
    if (first < 0) first = this.dirty.nextSet(0);
    if (first < 0) return 0;
    const pending = this.busyChunks.get(first);
    if (pending) await pending.catch(() => undefined);
    await this.pausePoint();
    if (!this.dirty.get(first)) return 0;
    let n = 1;
    while (n * g < this.opts.bufSize && first + n < this.dirty.chunks && this.dirty.get(first + n) && !this.busyChunks.has(first + n)) n++;
    for (let c = first; c < first + n; c++) this.dirty.clear(c);
    const size = this.source.size();
    let offset = first * g;
    const end = Math.min(size, (first + n) * g);
    this.cursor = first + n;
    // Claimed now, so writes that land meanwhile wait (mirror_iteration's pseudo op).
    let release!: () => void;
    const claim = new Promise<void>((r) => (release = r));
    for (let c = first; c < first + n; c++) this.busyChunks.set(c, claim);
    let delay = 0;
    try {
      let runs: Extent[];
      try {
        // Zeroes inside data are found in the buffer read anyway (operate), not by reading twice.
        runs = await this.source.blockStatusRuns(offset, end - offset, { wantZero: false });
      } catch {
        runs = [];
      }
      let k = 0;
      while (offset < end) {
        const pieces: Span[] = [];
        const opStart = offset;
        let charged = 0;
        while (offset < end && offset - opStart < this.maxIoBytes) {
          while (k < runs.length && runs[k]!.offset + runs[k]!.length <= offset) k++;
          const run = runs[k] && runs[k]!.offset <= offset ? runs[k] : undefined;
          const runEnd = run ? run.offset + run.length : end;
          let length = Math.min(runEnd, end, opStart + this.maxIoBytes) - offset;
          // Whole chunks only (the last one may end with the device).
          if (offset + length < end) length -= length % g;
          if (length < g) length = Math.min(g, end - offset);
          const zero = run !== undefined && !run.data && run.zero && this.coversClusters(offset, length);
          pieces.push({ offset, length, zero });
          if (!zero || !this.writeZeroesOk) charged += length;
          offset += length;
        }
        const op = this.cowAlign(opStart, offset, pieces);
        // Widened past this run of chunks, the rest of it is copied already; capped short of it, the loop goes on from there.
        offset = Math.min(op.end, end);
        // A copy needs buffer room for all of it (mirror_perform waits for free chunks); zeroes need none.
        const buffered = op.pieces.every((p) => p.zero) ? 0 : op.end - op.start;
        while (this.ops.size >= MIRROR_MAX_IN_FLIGHT || (this.ops.size > 0 && this.bufferedBytes + buffered > this.opts.bufSize)) await Promise.race(this.ops);
        if (this.failure) break;
        this.perform(op.start, op.end - op.start, op.pieces);
        delay = this.limiter.delay(charged);
      }
    } finally {
      for (let c = first; c < first + n; c++) if (this.busyChunks.get(c) === claim) this.busyChunks.delete(c);
      release();
    }
    return delay;
  }

  /**
   * mirror_cow_align: while the target cannot read its backing file, a
   * copy whose first or last chunk was never written goes out as whole
   * target clusters, read from the source (capped at the buffer size,
   * whole clusters); copies of zeroes alone are left as they are.
   */
  private cowAlign(start: number, end: number, pieces: Span[]): { start: number; end: number; pieces: Span[] } {
    const cow = this.cowChunks;
    if (!cow || pieces.every((p) => p.zero)) return { start, end, pieces };
    const g = this.granularity;
    if (cow.get(Math.floor(start / g)) && cow.get(Math.floor((end - 1) / g))) return { start, end, pieces };
    const cs = this.targetCluster || 512;
    const from = Math.floor(start / cs) * cs;
    let to = Math.ceil(end / cs) * cs;
    const max = Math.max(cs, Math.floor(this.maxIoBytes / cs) * cs);
    if (to - from > max) to = from + max;
    to = Math.min(to, this.source.size());
    return { start: from, end: to, pieces: [{ offset: from, length: to - from, zero: false }] };
  }

  /** Whether a zero write of [offset, offset+length) covers whole target clusters (bdrv_round_to_clusters would not widen it). */
  private coversClusters(offset: number, length: number): boolean {
    const cs = this.targetCluster;
    return cs === 0 || (offset % cs === 0 && (length % cs === 0 || offset + length === this.target.size()));
  }

  /** mirror_perform: one operation in flight, its chunks busy until it ends; its failure goes to the error policy. */
  private perform(offset: number, bytes: number, pieces: readonly Span[]): void {
    const g = this.granularity;
    const first = Math.floor(offset / g);
    const last = Math.ceil((offset + bytes) / g);
    const buffered = pieces.every((p) => p.zero) ? 0 : bytes;
    this.bytesInFlight += bytes;
    this.bufferedBytes += buffered;
    const work = this.operate(offset, bytes, pieces).finally(() => {
      this.bytesInFlight -= bytes;
      this.bufferedBytes -= buffered;
      this.ops.delete(work);
      for (let c = first; c < last; c++) if (this.busyChunks.get(c) === work) this.busyChunks.delete(c);
    });
    this.ops.add(this.trackIo(work));
    for (let c = first; c < last; c++) this.busyChunks.set(c, work);
  }

  /**
   * The data pieces are read together, then everything is written as one
   * request; chunks of zeroes the source could not tell cheaply (a raw
   * file's holes) are written as zeroes, as SEEK_HOLE would have made QEMU
   * write them (writePiecesOf).
   */
  private async operate(offset: number, bytes: number, spans: readonly Span[]): Promise<void> {
    let side: 'read' | 'write' = 'read';
    const buf = spans.some((p) => !p.zero) ? this.buffers.take(bytes) : undefined;
    try {
      const reads = await Promise.allSettled(spans.map((p) => (p.zero ? undefined : this.source.readInto(buf!.subarray(p.offset - offset, p.offset - offset + p.length), p.offset))));
      for (const r of reads) if (r.status === 'rejected') throw r.reason;
      side = 'write';
      const { pieces, dataBytes } = writePiecesOf(spans, buf, offset, this.pieceRules);
      await this.target.writePieces(pieces);
      this.writeback.noteWritten(dataBytes);
      this.cowChunks?.setRange(offset, bytes);
    } catch (err) {
      // The buffer is not reused: a write that failed may have left others of its pieces under way.
      this.dirty.setRange(offset, bytes);
      this.ioFailed(side, err);
      return;
    }
    if (buf) this.buffers.give(buf);
    if (!this.initialZeroing) this.progressCurrent += bytes;
  }

  /** The initial zeroing of a target (mirror_dirty_init): zero writes that count for no progress. */
  private zeroTargetRange(offset: number, bytes: number): void {
    this.perform(offset, bytes, [{ offset, length: bytes, zero: true }]);
  }

  private targetWrite(w: ActiveWrite): Promise<void> {
    if (w.kind === 'write') return this.target.write(w.offset, w.data!);
    if (w.kind === 'zero') return this.target.writeZeroes(w.offset, w.length, { mayUnmap: w.mayUnmap ?? false });
    return this.target.discard(w.offset, w.length);
  }

  /**
   * A write-blocking mirror copies each write that reached the source to
   * the target before the write completes (do_sync_target_write), after
   * any copy of the same chunks in flight; dirty chunks it covers only in
   * part stay dirty for the background copy.
   */
  async activeWrite(w: ActiveWrite): Promise<void> {
    const g = this.granularity;
    let { offset, length } = w;
    let data = w.data;
    for (;;) {
      const first = Math.floor(offset / g);
      const last = Math.ceil((offset + length) / g);
      const busy = [...new Set(Array.from({ length: last - first }, (_, i) => this.busyChunks.get(first + i)).filter((p) => p !== undefined))];
      if (busy.length === 0) break;
      await Promise.allSettled(busy);
    }
    if (offset % g !== 0 && this.dirty.get(Math.floor(offset / g))) {
      const skip = Math.ceil(offset / g) * g - offset;
      if (length <= skip) return;
      offset += skip;
      length -= skip;
      data = data?.subarray(skip);
    }
    if ((offset + length) % g !== 0 && this.dirty.get(Math.floor((offset + length - 1) / g))) {
      const tail = (offset + length) % g;
      if (length <= tail) return;
      length -= tail;
      data = data?.subarray(0, length);
    }
    const alignedStart = Math.ceil(offset / g) * g;
    const alignedEnd = Math.floor((offset + length) / g) * g;
    if (alignedStart < alignedEnd) this.dirty.clearRange(alignedStart, alignedEnd - alignedStart);
    const first = Math.floor(offset / g);
    const last = Math.ceil((offset + length) / g);
    const work = (async () => {
      this.progressTotal += length;
      this.activeBytesInFlight += length;
      try {
        await this.targetWrite({ ...w, offset, length, data });
        this.progressCurrent += length;
      } catch (err) {
        this.dirty.setRange(Math.floor(offset / g) * g, Math.ceil((offset + length) / g) * g - Math.floor(offset / g) * g);
        this.activelySynced = false;
        this.ioFailed('write', err);
      } finally {
        this.activeBytesInFlight -= length;
      }
    })();
    for (let c = first; c < last; c++) this.busyChunks.set(c, work);
    try {
      await work;
    } finally {
      for (let c = first; c < last; c++) if (this.busyChunks.get(c) === work) this.busyChunks.delete(c);
    }
  }

  /** mirror_error_action: the policy decides; report fails the job, stop pauses it as a user pause would. */
  private ioFailed(side: 'read' | 'write', err: unknown): void {
    this.activelySynced = false;
    const errno = (err as { errno?: string } | undefined)?.errno ?? 'EIO';
    const action = this.errorAction(side === 'read' ? this.opts.onSourceError : this.opts.onTargetError, side, errno);
    if (action === 'report') this.failure ??= new Error(strerror(errno));
  }

  /** mirror_flush: a failed flush of the target goes through the target's error policy. */
  private async flushTarget(): Promise<boolean> {
    try {
      await this.target.flush();
      return true;
    } catch (err) {
      this.ioFailed('write', err);
      return false;
    }
  }

  /** mirror_prepare: the graph changes of a successful end (the pivot); a failure fails the job. */
  override async prepare(): Promise<void> {
    await this.exitCommon(false);
  }

  /** mirror_abort: the same without the pivot. */
  override async abort(): Promise<void> {
    await this.exitCommon(true);
  }

  private async exitCommon(abort: boolean): Promise<void> {
    if (this.prepared) return;
    this.prepared = true;
    this.filter.job = undefined;
    this.source.dirtyBitmaps.release(this.dirtyEntry);
    try {
      await this.opts.exit.finish(this, abort);
    } finally {
      this.toReplace?.blockers.remove(REPLACE_BLOCKER);
      // The drain that began as the run ended is over.
      this.resume();
    }
  }

  override async clean(): Promise<void> {
    // A job that never ran (cancelled at once) still leaves the graph as it found it.
    await this.exitCommon(true);
    await this.opts.afterClean?.();
  }
}

/** mirror_complete's blocker on the node to be replaced. */
const REPLACE_BLOCKER = { reason: 'block device is in use by block-job-complete', allows: new Set<never>() };
