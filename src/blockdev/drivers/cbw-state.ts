import { BlockError } from '../../image/errors.js';
import { strerror } from '../../image/errno.js';
import type { Extent } from '../../image/types.js';
import { ChunkBitmap } from '../bitmap.js';
import { type BlockCopy, CopyError } from '../block-copy.js';
import { cowChild, skipFilters } from '../chain.js';
import type { Clock } from '../clock.js';
import { BitmapCheck, type DirtyBitmap } from '../dirty-bitmap.js';
import type { BlockNode } from '../node.js';

/** What a failed copy-before-write breaks (OnCbwError). */
export type OnCbwError = 'break-guest-write' | 'break-snapshot';

export interface CbwOptions {
  onCbwError: OnCbwError;
  /** A copy taking longer fails with ETIMEDOUT (cbw-timeout, in nanoseconds here); 0: no limit. */
  timeoutNs: number;
  /** What the timeout is measured on. */
  clock: Clock;
  /** Copy only what this bitmap has dirty at open (its bits are taken once, as block_copy_state_new merges them). */
  bitmap?: DirtyBitmap;
}

/** A fleecing reader's read of the source in flight: guest writes over it wait (BlockReq in frozen_read_reqs). */
interface FrozenRead {
  offset: number;
  end: number;
  done: Promise<void>;
}

const denied = () => new BlockError('IO', strerror('EACCES'), { errno: 'EACCES' });

/**
 * The state of a copy-before-write node the user added
 * (BDRVCopyBeforeWriteState): block-copy from the source (`file`) to the
 * target for every cluster a write is about to change, and the
 * point-in-time view that snapshot-access reads — where a cluster was
 * copied (done), from the target, else from the source, which writes then
 * leave alone until the read is over. `access` is what the view still
 * holds (all, or the bitmap's dirty areas, less what was discarded from
 * it). With on-cbw-error=break-snapshot a failed copy lets the write
 * through and ends the view: every later snapshot request fails with
 * EACCES.
 */
export class CbwState {
  readonly access: ChunkBitmap;
  readonly done: ChunkBitmap;
  /** The first failure under break-snapshot (s->snapshot_error). */
  snapshotError: unknown;
  private readonly frozen = new Set<FrozenRead>();
  /** block-copy's copy bitmap, listed on the source as QEMU lists it (created there by block_copy_state_new). */
  private readonly copyBitmapEntry: DirtyBitmap;
  private readonly sourceNode: BlockNode;

  /**
   * `bcs` copies from the source to the target (cbw_open's
   * block_copy_state_new; a backup job shares it with its filter): all of
   * it is to be copied, or the bitmap's clusters.
   */
  constructor(
    readonly bcs: BlockCopy,
    private readonly opts: CbwOptions,
  ) {
    const source = bcs.source;
    const clusterSize = bcs.clusterSize;
    if (opts.bitmap) {
      const b = opts.bitmap;
      try {
        b.check(BitmapCheck.AllowReadOnly);
        if (b.size !== source.size()) {
          throw new Error(`Bitmaps are of different sizes (destination size is ${source.size()}, source size is ${b.size}) and can't be merged`);
        }
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        throw new BlockError('INVALID_ARGUMENT', `Cannot create block-copy-state: Failed to merge bitmap '${b.name ?? ''}' to internal copy-bitmap: ${msg}`);
      }
      bcs.bitmap.mergeAny(b.bits);
    } else {
      bcs.bitmap.setAll();
    }
    this.sourceNode = source;
    this.copyBitmapEntry = source.dirtyBitmaps.attach(bcs.bitmap);
    this.done = new ChunkBitmap(source.size(), clusterSize);
    // What the view holds starts as what is to be copied.
    this.access = bcs.bitmap.clone();
  }

  get clusterSize(): number {
    return this.bcs.clusterSize;
  }

  /**
   * cbw_do_copy_before_write: the clusters the request touches reach the
   * target first (a timed-out copy goes on in the background, as QEMU's
   * does), then the writer waits for fleecing reads of them still going
   * to the source. A failure fails the write (break-guest-write) or ends
   * the view and lets it through (break-snapshot); after that no copying
   * is done at all. A range marked done may include clusters the bitmap
   * never asked for: QEMU marks the whole request.
   */
  async copyBeforeWrite(offset: number, length: number): Promise<void> {
    if (this.snapshotError !== undefined || length <= 0) return;
    const cs = this.clusterSize;
    const off = Math.floor(offset / cs) * cs;
    const end = Math.ceil((offset + length) / cs) * cs;
    let failure: unknown;
    try {
      await this.copyWithTimeout(off, end - off);
    } catch (err) {
      failure = err instanceof CopyError ? err.cause : err;
    }
    if (failure !== undefined && this.opts.onCbwError === 'break-guest-write') throw failure;
    if (failure !== undefined) this.snapshotError ??= failure;
    else this.done.setRange(off, end - off);
    await this.waitFrozen(off, end);
  }

  private copyWithTimeout(offset: number, length: number): Promise<void> {
    const copy = this.bcs.copyBeforeWrite(offset, length);
    if (this.opts.timeoutNs <= 0) return copy;
    // The copy goes on after a timeout; its failure then is nobody's to report (its clusters stay dirty).
    copy.catch(() => undefined);
    const timer = this.opts.clock.sleep(this.opts.timeoutNs);
    let finished = false;
    const expired = timer.done.then(() => {
      if (!finished) throw new BlockError('IO', strerror('ETIMEDOUT'), { errno: 'ETIMEDOUT' });
    });
    return Promise.race([copy, expired]).finally(() => {
      finished = true;
      timer.wake();
    });
  }

  private async waitFrozen(offset: number, end: number): Promise<void> {
    for (;;) {
      const busy = [...this.frozen].filter((r) => r.offset < end && offset < r.end).map((r) => r.done);
      if (busy.length === 0) return;
      await Promise.all(busy);
    }
  }

  /**
   * cbw_snapshot_read_lock: refuses (EACCES) a view that broke or a range
   * it does not wholly hold; otherwise where the first run of the range is
   * read from — the target where copied, else the source, held against
   * writers until `release`.
   */
  private readLock(offset: number, length: number): { node: BlockNode; length: number; release: () => void } {
    if (this.snapshotError !== undefined) throw denied();
    const g = this.access.granularity;
    const last = Math.min(this.access.chunks - 1, Math.floor((offset + length - 1) / g));
    for (let c = Math.floor(offset / g); c <= last; c++) if (!this.access.get(c)) throw denied();
    const cs = this.done.granularity;
    const first = Math.floor(offset / cs);
    const copied = this.done.get(first);
    let c = first + 1;
    while (c * cs < offset + length && c < this.done.chunks && this.done.get(c) === copied) c++;
    const run = Math.min(length, c * cs - offset);
    if (copied) return { node: this.bcs.target, length: run, release: () => undefined };
    let release!: () => void;
    const req: FrozenRead = { offset, end: offset + run, done: new Promise<void>((r) => (release = r)) };
    this.frozen.add(req);
    return {
      node: this.bcs.source,
      length: run,
      release: () => {
        this.frozen.delete(req);
        release();
      },
    };
  }

  /** cbw_co_preadv_snapshot: run by run from where each run is held. */
  async readInto(buf: Uint8Array, offset: number): Promise<void> {
    for (let pos = 0; pos < buf.length; ) {
      const lock = this.readLock(offset + pos, buf.length - pos);
      try {
        await lock.node.readInto(buf.subarray(pos, pos + lock.length), offset + pos);
      } finally {
        lock.release();
      }
      pos += lock.length;
    }
  }

  /**
   * cbw_co_snapshot_block_status: the status of the first run, as the node
   * holding it answers for itself (bdrv_block_status: what a backing image
   * below it holds is not its own). Whatever reads as data or zeroes is
   * allocated in the view.
   */
  async blockStatus(offset: number, length: number): Promise<Extent> {
    const lock = this.readLock(offset, length);
    try {
      const own = await ownStatus(lock.node, offset, lock.length);
      return { offset, length: own.length, data: own.data, zero: own.zero, allocated: own.data || own.zero, depth: 0 };
    } finally {
      lock.release();
    }
  }

  /**
   * cbw_co_pdiscard_snapshot: the clusters wholly inside the range leave
   * the view and need no copy any more, and the target may drop them. QEMU
   * 7.2 aborts on a range that is not cluster-aligned (hbitmap_reset's
   * assertion); here the partly covered clusters at its ends are kept.
   */
  async discard(offset: number, length: number): Promise<void> {
    const cs = this.clusterSize;
    const size = this.access.size;
    const start = Math.ceil(offset / cs) * cs;
    const end = offset + length >= size ? size : Math.floor((offset + length) / cs) * cs;
    if (end <= start) return;
    this.access.clearRange(start, end - start);
    this.bcs.reset(start, end - start);
    await this.bcs.target.discard(start, end - start);
  }

  /** cbw_close: copies still running (timed out ones) finish first; the copy bitmap leaves the source. */
  async close(): Promise<void> {
    await this.bcs.drain();
    this.sourceNode.dirtyBitmaps.release(this.copyBitmapEntry);
  }
}

/** What `node` itself holds of the range (bdrv_block_status of one node): areas its backing image answers are neither data nor zero, but zeroes past that image's end. */
async function ownStatus(node: BlockNode, offset: number, length: number): Promise<{ length: number; data: boolean; zero: boolean }> {
  const e = await node.blockStatus(offset, length);
  const len = Math.min(Math.max(e.length, 1), length);
  if (e.depth === 0) return { length: len, data: e.data, zero: e.zero };
  const backing = cowChild(skipFilters(node));
  return { length: len, data: false, zero: backing !== undefined && offset >= backing.size() };
}

