import { ChunkBitmap } from './bitmap.js';
import type { BlockNode } from './node.js';
import { isZero } from '../image/request.js';
import type { Extent, WritePiece } from '../image/types.js';
import { WritebackHints } from './writeback.js';

/** A failed copy: which side failed (QEMU's IoOperationType) and why. */
export class CopyError extends Error {
  /** Where only some extents of a task failed: the byte ranges still to copy (else the whole task). */
  left: Array<[offset: number, length: number]> | undefined;

  constructor(
    readonly operation: 'read' | 'write',
    override readonly cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
  get errno(): string {
    return (this.cause as { errno?: string } | undefined)?.errno ?? 'EIO';
  }
}

export interface BlockCopyOptions {
  /** Write compressed clusters (the target must support it); tasks are then one cluster. */
  compress?: boolean;
  /** Largest task in bytes (x-perf max-chunk); 0: QEMU's default of max(cluster, 1 MiB). */
  maxChunk?: number;
  /** Called with the bytes of every successful copy (background or before-write), in whole clusters. */
  onProgress?: (bytes: number) => void;
  /**
   * Each extent of a task is a request of its own that fails alone, as
   * QEMU's block-copy tasks (one per block-status extent) do: what the
   * others copied stays copied. Zeroes are found by block status only and
   * written without unmapping, as QEMU's COPY_WRITE_ZEROES does. The
   * copy-before-write filter copies so; the backup's pass writes a task as
   * one request, which is much cheaper.
   */
  separateExtents?: boolean;
  /**
   * One worker (x-perf max-workers=1): QEMU's extent tasks then run one
   * after the other and the first failure ends the call, so the extents
   * after it are neither read nor copied.
   */
  sequential?: boolean;
}

/** The most a task of zeroes grows to (extendZeroRun). */
const ZERO_RUN_MAX = 64 << 20;

interface CopyTask {
  first: number;
  /** Past the task's last cluster; a task of zeroes may grow while it runs. */
  end: number;
  /** Settles once the clusters are copied (or, on failure with CopyError, put back on the copy bitmap). */
  done: Promise<void>;
}

/** block-copy's cluster: max(64 KiB, the target's cluster size) (block_copy_calculate_cluster_size). */
export function blockCopyClusterSize(target: BlockNode): number {
  const info = (target as unknown as { info?: () => { clusterSize?: number } }).info?.();
  return Math.max(65536, info?.clusterSize ?? 0);
}

/**
 * The cluster-granular copier shared by the backup job's background pass
 * and copy-before-write (block/block-copy.c): a copy bitmap (set = still to
 * copy), tasks of adjacent dirty clusters, zero areas written as zeroes,
 * and serialisation so a cluster is copied once: a second copier of a
 * cluster in flight waits for the first. A failed task leaves its clusters
 * dirty.
 */
export class BlockCopy {
  readonly bitmap: ChunkBitmap;
  /** The clusters of the copies in flight, and those copies: a bit and a task per copy rather than a map entry per cluster (a sparse 16 GiB backup claims 262 144 clusters). */
  private readonly claimed: ChunkBitmap;
  private readonly inFlight = new Set<CopyTask>();
  private maxChunk = 0;
  private opts: BlockCopyOptions = {};

  constructor(
    /** Where copies read and write: a copy-before-write filter's links, followed when the graph swaps a child. */
    public source: BlockNode,
    public target: BlockNode,
    readonly clusterSize: number,
    opts: BlockCopyOptions = {},
  ) {
    this.bitmap = new ChunkBitmap(source.size(), clusterSize);
    this.claimed = new ChunkBitmap(source.size(), clusterSize);
    this.writeback = new WritebackHints(target);
    this.setOptions(opts);
  }

  /**
   * The copy options, also after creation: a backup job sets them on the
   * block-copy its copy-before-write filter made (block_copy_set_copy_opts,
   * block_copy_set_progress_meter).
   */
  setOptions(opts: BlockCopyOptions): void {
    this.opts = { ...opts };
    this.maxChunk = opts.compress ? this.clusterSize : Math.max(this.clusterSize, opts.maxChunk || Math.max(this.clusterSize, 1 << 20));
    this.pool.length = 0;
  }

  /**
   * block_copy_reset: clusters wholly inside the range need no copy any
   * more (a fleecing user discarded them from the snapshot).
   */
  reset(offset: number, length: number): void {
    this.bitmap.clearRange(offset, length);
  }

  /** Whether clusters are being copied right now (a job finishing must wait for them). */
  get busy(): boolean {
    return this.inFlight.size > 0;
  }

  /** Resolves once no copy is in flight (copies started meanwhile included); failures are the copiers' to report. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight].map((t) => t.done));
  }

  /**
   * Copies the next run of dirty clusters at or after cluster `from`,
   * returning the clusters [first, end) it copied, or undefined when
   * nothing is dirty there. Throws CopyError when the copy fails.
   */
  async copyNext(from: number): Promise<{ first: number; end: number } | undefined> {
    const task = this.startNext(from);
    if (!task) return undefined;
    await task.done;
    return { first: task.first, end: task.end };
  }

  /**
   * Claims the next run of dirty clusters at or after cluster `from` and
   * starts copying it. The claim is synchronous, so callers can keep
   * several tasks in flight (QEMU's block-copy workers) without two of them
   * taking the same clusters; `done` rejects with CopyError on failure.
   * With `zeroRuns`, a task of zeroes may grow while it runs (its `end`).
   */
  startNext(from: number, opts: { zeroRuns?: boolean } = {}): Readonly<CopyTask> | undefined {
    let first = this.bitmap.nextSet(from);
    // A cluster claimed by copy-before-write is already on its way.
    while (first >= 0 && this.claimed.get(first)) first = this.bitmap.nextSet(first + 1);
    if (first < 0) return undefined;
    let n = 1;
    const max = Math.max(1, Math.floor(this.maxChunk / this.clusterSize));
    while (n < max && first + n < this.bitmap.chunks && this.bitmap.get(first + n) && !this.claimed.get(first + n)) n++;
    return this.claim(first, n, opts.zeroRuns === true);
  }

  /**
   * Copy-before-write: every dirty cluster touched by [offset, offset+length)
   * reaches the target before the caller may change it.
   */
  async copyBeforeWrite(offset: number, length: number): Promise<void> {
    if (length <= 0) return;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.min(this.bitmap.chunks - 1, Math.floor((offset + length - 1) / this.clusterSize));
    for (let c = first; c <= last; ) {
      const pending = this.claimed.get(c) ? this.copyOf(c) : undefined;
      if (pending) {
        // Copied by someone else now; if that fails the bit is set again and we copy it ourselves.
        await pending.catch(() => undefined);
        continue;
      }
      if (!this.bitmap.get(c)) {
        c++;
        continue;
      }
      // At most one task's worth at a time (block_copy splits so too): a huge guest write must not mean a huge buffer.
      let n = 1;
      const max = Math.max(1, Math.floor(this.maxChunk / this.clusterSize));
      while (n < max && c + n <= last && this.bitmap.get(c + n) && !this.claimed.get(c + n)) n++;
      await this.claim(c, n, false).done;
      c += n;
    }
  }

  /** The copy in flight that holds cluster `c`. */
  private copyOf(c: number): Promise<void> | undefined {
    for (const t of this.inFlight) if (c >= t.first && c < t.end) return t.done;
    return undefined;
  }

  /** Takes clusters [first, first+n) off the copy bitmap and starts their copy; a failure puts them back. */
  private claim(first: number, n: number, zeroRuns: boolean): CopyTask {
    for (let c = first; c < first + n; c++) {
      this.bitmap.clear(c);
      this.claimed.set(c);
    }
    const task: CopyTask = { first, end: first + n, done: Promise.resolve() };
    this.inFlight.add(task);
    task.done = this.runTask(task, zeroRuns);
    return task;
  }

  private async runTask(task: CopyTask, zeroRuns: boolean): Promise<void> {
    const first = task.first;
    try {
      await this.copy(task, zeroRuns);
    } catch (err) {
      const left = err instanceof CopyError ? err.left : undefined;
      if (!left) for (let c = first; c < task.end; c++) this.bitmap.set(c);
      else for (const [offset, length] of left) this.bitmap.setRange(offset, length);
      throw err;
    } finally {
      for (let c = first; c < task.end; c++) this.claimed.clear(c);
      this.inFlight.delete(task);
    }
  }

  /**
   * A task that found only zeroes takes the dirty, unclaimed clusters after
   * it that read as zeroes too, up to ZERO_RUN_MAX: QEMU makes a task of at
   * most 1 MiB there as well, but a task costs C far less than JavaScript
   * (a sparse 16 GiB backup is 16 384 of them). The target gets the same
   * zeroes; only the job's progress moves in larger steps. Returns the
   * bytes of zeroes the task now covers from `start`.
   */
  private async extendZeroRun(task: CopyTask, start: number, status: { wantZero: boolean }): Promise<number> {
    const cs = this.clusterSize;
    const size = this.source.size();
    const from = task.end * cs;
    if (from >= size) return size - start;
    let more: { zero: boolean; length: number };
    try {
      more = await this.source.blockStatus(from, Math.min(ZERO_RUN_MAX, size - from), status);
    } catch {
      return from - start; // asked only to save work: the task's own clusters are done as they were
    }
    if (!more.zero) return from - start;
    // Whole clusters only, the last one too when the run reaches the end.
    const limit = task.end + (from + more.length >= size ? this.bitmap.chunks - task.end : Math.floor(more.length / cs));
    while (task.end < limit && this.bitmap.get(task.end) && !this.claimed.get(task.end)) {
      this.bitmap.clear(task.end);
      this.claimed.set(task.end);
      task.end++;
    }
    return Math.min(task.end * cs, size) - start;
  }

  /**
   * Copies one claimed task as block_copy_task_run does, extent by extent
   * of the source's block status: zero extents (whole clusters) are written
   * as zeroes that may unmap, so a sparse source gives a sparse target.
   * The extents are found first and then copied together (QEMU runs them
   * as separate tasks in parallel): their reads at once, then their writes
   * as one request of pieces. Every extent is settled before the task is,
   * since they share one buffer; the first failure in offset order is the
   * task's, a read's before any write's.
   */
  private async copy(task: CopyTask, zeroRuns: boolean): Promise<void> {
    const cs = this.clusterSize;
    const start = task.first * cs;
    const end = Math.min(task.end * cs, this.source.size());
    const extents: { offset: number; length: number; zero: boolean }[] = [];
    // The data is read anyway, so zeroes are found in it (copyPieces) rather than by reading twice; but a
    // compressed copy writes what it reads as data (QEMU compresses zero data too), so there only the
    // source's own answer (QEMU's want_zero block status) tells the zeroes that are written as zeroes.
    const status = { wantZero: this.opts.compress === true || this.opts.separateExtents === true };
    let runs: Extent[];
    try {
      runs = await this.source.blockStatusRuns(start, end - start, status);
    } catch (err) {
      throw new CopyError('read', err);
    }
    for (let offset = start, k = 0; offset < end; ) {
      while (k < runs.length && runs[k]!.offset + runs[k]!.length <= offset) k++;
      const run = runs[k];
      let zero: boolean;
      let stLength: number;
      if (run && run.offset <= offset) {
        zero = run.zero;
        stLength = run.offset + run.length - offset;
      } else {
        // Not covered by the runs (a node that answered short): asked on its own, as before.
        try {
          ({ zero, length: stLength } = await this.source.blockStatus(offset, end - offset, status));
        } catch (err) {
          throw new CopyError('read', err);
        }
      }
      // Whole clusters only: a zero extent shorter than a cluster is copied as data.
      let length = Math.min(end - offset, Math.max(cs, Math.floor(stLength / cs) * cs));
      if (offset + length > end) length = end - offset;
      extents.push({ offset, length, zero: zero && stLength >= length });
      offset += length;
    }
    const only = extents[0]!;
    if (zeroRuns && extents.length === 1 && only.zero && !this.opts.compress && !this.opts.separateExtents) {
      only.length = await this.extendZeroRun(task, start, status);
    }
    // Zero extents need no buffer; a task of zeroes only takes none.
    const buf = extents.some((e) => !e.zero) ? this.takeBuffer(end - start) : new Uint8Array(0);
    try {
      if (this.opts.separateExtents) {
        await this.copyEach(extents, buf, start);
      } else if (this.opts.compress) {
        const results = await Promise.allSettled(extents.map((e) => this.copyCompressed(e.offset, e.length, e.zero, buf.subarray(e.offset - start, e.offset - start + e.length))));
        for (const r of results) if (r.status === 'rejected') throw r.reason;
      } else {
        await this.copyPieces(extents, buf, start);
      }
    } finally {
      this.giveBuffer(buf);
    }
    // Progress counts whole clusters, the last one too (block-copy's tasks are cluster-aligned), as the job's length does.
    this.opts.onProgress?.((task.end - task.first) * cs);
  }

  /**
   * Every extent copied by a request of its own, all at once; an extent
   * that fails leaves its clusters to copy, the first failure in offset
   * order is the task's.
   */
  private async copyEach(extents: readonly { offset: number; length: number; zero: boolean }[], buf: Uint8Array, start: number): Promise<void> {
    const results = await Promise.allSettled(
      extents.map(async (e) => {
        if (e.zero) return this.write(() => this.target.writeZeroes(e.offset, e.length));
        const data = buf.subarray(e.offset - start, e.offset - start + e.length);
        try {
          await this.source.readInto(data, e.offset);
        } catch (err) {
          throw new CopyError('read', err);
        }
        await this.write(() => this.target.write(e.offset, data));
        this.noteWritten(e.length);
      }),
    );
    const failed = extents.filter((_, i) => results[i]!.status === 'rejected');
    if (failed.length === 0) return;
    const first = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason as unknown;
    const err = first instanceof CopyError ? first : new CopyError('write', first);
    throw this.partlyCopied(err, extents, failed);
  }

  /**
   * Some extents of a task failed: as QEMU's one task per extent, what the others copied counts as
   * progress (a failed backup's offset says so) and only the failed extents stay to copy.
   */
  private partlyCopied(err: CopyError, extents: readonly { offset: number; length: number }[], failed: readonly { offset: number; length: number }[]): CopyError {
    const cs = this.clusterSize;
    const copied = extents.filter((e) => !failed.includes(e)).reduce((sum, e) => sum + Math.ceil(e.length / cs) * cs, 0);
    if (copied > 0) this.opts.onProgress?.(copied);
    err.left = failed.map((e) => [e.offset, e.length]);
    return err;
  }

  /**
   * Reads the task's data extents (all at once: the file merges reads of
   * clusters that lie together), then writes the whole task to the target
   * as one request of pieces, so a task of alternating data and zero
   * clusters costs the target one request, not one per extent. Extents
   * whose read failed are left out of the write and stay to copy.
   */
  private async copyPieces(extents: readonly { offset: number; length: number; zero: boolean }[], buf: Uint8Array, start: number): Promise<void> {
    const read = (e: (typeof extents)[number]) => (e.zero ? undefined : this.source.readInto(buf.subarray(e.offset - start, e.offset - start + e.length), e.offset));
    let reads: PromiseSettledResult<void>[];
    if (this.opts.sequential) {
      reads = [];
      let failure: PromiseSettledResult<void> | undefined;
      for (const e of extents) {
        // After a failure nothing more is read; the rest counts as failed with it (left to copy).
        const r = failure ?? (await Promise.allSettled([read(e)]))[0]!;
        if (r.status === 'rejected') failure = r;
        reads.push(r);
      }
    } else {
      reads = await Promise.allSettled(extents.map(read));
    }
    const unread = extents.filter((_, i) => reads[i]!.status === 'rejected');
    const readable = unread.length === 0 ? extents : extents.filter((_, i) => reads[i]!.status !== 'rejected');
    let dataBytes = 0;
    const pieces = readable.map((e): WritePiece => {
      if (e.zero) return { offset: e.offset, length: e.length, mayUnmap: true };
      const data = buf.subarray(e.offset - start, e.offset - start + e.length);
      // Zeroes read where the source could not tell cheaply (a raw file's holes) stay sparse in the target.
      if (isZero(data)) return { offset: e.offset, length: e.length, mayUnmap: true };
      dataBytes += e.length;
      return { offset: e.offset, length: e.length, data };
    });
    if (pieces.length > 0) await this.write(() => this.target.writePieces(pieces));
    this.noteWritten(dataBytes);
    if (unread.length > 0) {
      const reason = (reads.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as unknown;
      throw this.partlyCopied(new CopyError('read', reason), extents, unread);
    }
  }

  private async copyCompressed(offset: number, length: number, zero: boolean, buf: Uint8Array): Promise<void> {
    if (zero) return this.write(() => this.target.writeZeroes(offset, length, { mayUnmap: true }));
    try {
      await this.source.readInto(buf, offset);
    } catch (err) {
      throw new CopyError('read', err);
    }
    await this.write(() => this.target.writeCompressed(offset, buf));
    this.noteWritten(length);
  }

  private readonly writeback: WritebackHints;
  private noteWritten(bytes: number): void {
    this.writeback.noteWritten(bytes);
  }

  /** The buffer a copy task holds at most (its share of a daemon's copy budget). */
  get taskBytes(): number {
    return this.maxChunk;
  }

  /** Shares of a copy budget went back: the buffers they paid for are not kept either. */
  dropBuffers(n: number): void {
    this.pool.splice(Math.max(0, this.pool.length - n));
  }

  /** Task buffers are reused: a backup allocating a fresh MiB per task keeps the collector busy for nothing. */
  private readonly pool: Uint8Array[] = [];
  private takeBuffer(length: number): Uint8Array {
    if (length > this.maxChunk) return new Uint8Array(length);
    const b = this.pool.pop() ?? new Uint8Array(this.maxChunk);
    return b.subarray(0, length);
  }
  private giveBuffer(buf: Uint8Array): void {
    if (buf.length > 0 && buf.buffer.byteLength === this.maxChunk && this.pool.length < 64) this.pool.push(new Uint8Array(buf.buffer, 0, this.maxChunk));
  }

  private async write(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      throw new CopyError('write', err);
    }
  }
}
