import { isAllocated, isAllocatedAbove } from '../blockdev/allocation.js';
import type { BlockBackend } from '../blockdev/block-backend.js';
import { cowChild, filterOrCowChild, skipFilters } from '../blockdev/chain.js';
import type { CopyOnReadNode } from '../blockdev/drivers/copy-on-read.js';
import type { BlockGraph } from '../blockdev/graph.js';
import { setBacking } from '../blockdev/graph-edit.js';
import { GraphTransaction } from '../blockdev/graph-transaction.js';
import type { BlockNode } from '../blockdev/node.js';
import { type ReopenContext, reopenSetReadOnly } from '../blockdev/reopen.js';
import { errnoOf, strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import { BlockJob, type BlockJobListener, type BlockJobOptions, type OnError } from './block-job.js';

/** The most one step asks of the chain and copies (STREAM_CHUNK): several clusters, so contiguous data moves in few requests. */
export const STREAM_CHUNK = 512 << 10;

export interface StreamOptions extends BlockJobOptions {
  graph: BlockGraph;
  /** The node that receives the data (target_bs: the command's device). */
  top: BlockNode;
  /** The copy-on-read filter above it, through which the job reads. */
  filter: CopyOnReadNode;
  /** The job's BlockBackend on the filter (s->blk). */
  blk: BlockBackend;
  /** The lowest image whose data is copied (base_overlay), and the node right above the base, filters included (above_base). */
  baseOverlay: BlockNode;
  aboveBase: BlockNode;
  /** The backing file name written into the top image instead of the base's own. */
  backingFile?: string;
  onError?: OnError;
  /** The top was read-only and reopened read-write for the job: read-only again at its end. */
  wasReadOnly: boolean;
  /** The name QEMU gives a node (bdrv_refresh_filename), written as the new backing file name. */
  nameOf: (n: BlockNode) => string;
  reopen: ReopenContext;
}

/**
 * The copy-on-read filter leaves the graph (bdrv_cor_filter_drop): its
 * frozen chain is let go first, then its parents use the node below it.
 * QEMU keeps the node itself alive while the job holds it, with no child
 * (and crashes on a query then); here the job lets go of it and it goes.
 */
export async function dropCorFilter(graph: BlockGraph, filter: CopyOnReadNode, job?: BlockJob): Promise<void> {
  filter.releaseChain();
  await job?.nodes.remove(filter);
  await graph.dropFilter(filter);
}

/**
 * A stream job (block/stream.c): the data the top image reads from its
 * backing chain, down to the base, is copied into it through a
 * copy-on-read filter; then the top's backing becomes the base (its image
 * names it) and the layers in between leave the chain. Progress counts
 * every byte of the top, copied or not, as QEMU counts it.
 */
export class StreamJob extends BlockJob {
  private readonly o: StreamOptions;
  private filterInPlace = true;
  private blkInPlace = true;

  constructor(id: string, events: BlockJobListener, opts: StreamOptions) {
    super(id, 'stream', events, opts);
    this.o = opts;
  }

  /** No drained section surrounds the start (no paused/running pair on qsd). */
  protected override get drainsOnStart(): boolean {
    return false;
  }

  /**
   * query-block-jobs' busy: copying (or about to) rather than sleeping on its rate limit, as QEMU's job->busy
   * is outside job_sleep_ns. A pause asked for while a step is in flight is met only after it (iotest 030:
   * once paused and not busy, the offset stays).
   */
  override get busy(): boolean {
    return this.status === 'running' && !this.isIdle;
  }

  override usesNode(node: object): boolean {
    return node === this.o.top || node === this.o.filter || this.nodes.has(node as BlockNode);
  }

  /** stream_run: step by step, what the top lacks and a layer above the base holds is read through the filter (and so copied up). */
  protected async run(): Promise<void> {
    const top = skipFilters(this.o.top);
    if (top === this.o.baseOverlay) return;
    const len = this.o.top.size();
    this.progressTotal = this.progressCurrent + len;
    let delay = 0;
    let error: string | undefined;
    for (let offset = 0, n = 0; offset < len; offset += n) {
      await this.sleep(delay);
      let copy = false;
      let failed: string | undefined;
      try {
        const own = await isAllocated(top, offset, STREAM_CHUNK);
        n = own.length;
        if (!own.allocated) {
          const above = await isAllocatedAbove(cowChild(top)!, this.o.baseOverlay, true, offset, n);
          // The backing chain ends before the top does: nothing more to copy.
          n = !above.allocated && above.length === 0 ? len - offset : above.length;
          copy = above.allocated;
        }
        if (copy) await this.o.filter.prefetch(offset, n);
      } catch (err) {
        failed = errnoOf(err);
      }
      if (failed !== undefined) {
        const action = this.errorAction(this.o.onError ?? 'report', 'read', failed);
        if (action === 'stop') {
          n = 0;
          continue;
        }
        error ??= failed;
        if (action === 'report') break;
      }
      this.progressCurrent += n;
      delay = copy ? this.rateLimitDelay(n) : 0;
    }
    // An ignored error still fails the job at its end: the backing file must stay.
    if (error !== undefined) throw new BlockError('IO', strerror(error), { errno: error });
  }

  /**
   * stream_prepare: the filter goes, then the top's backing becomes the
   * node below the range (none when the whole chain was streamed) and its
   * image names it — `backing-file`, or the base's own name, and format.
   * The image is rewritten even if the graph change failed, as in QEMU.
   */
  override async prepare(): Promise<void> {
    await this.dropFilter();
    const top = skipFilters(this.o.top);
    if (!cowChild(top)) return;
    const base = filterOrCowChild(this.o.aboveBase);
    const unfilteredBase = base && skipFilters(base);
    let linkFailed = false;
    try {
      await GraphTransaction.run((tran) => setBacking(tran, top, base));
    } catch {
      linkFailed = true;
    }
    let nameFailed: string | undefined;
    try {
      await top.changeBackingFile(unfilteredBase && (this.o.backingFile ?? this.o.nameOf(unfilteredBase)), unfilteredBase?.driver);
    } catch (err) {
      nameFailed = errnoOf(err);
    }
    const errno = linkFailed ? 'EPERM' : nameFailed;
    if (errno !== undefined) throw new BlockError('IO', strerror(errno), { errno });
  }

  /** stream_clean: the filter (if still there) and the BlockBackend go; a top that was read-only becomes so again. */
  override async clean(): Promise<void> {
    await this.dropFilter();
    if (this.blkInPlace) {
      this.blkInPlace = false;
      await this.o.blk.remove();
    }
    if (this.o.wasReadOnly) await reopenSetReadOnly(this.o.reopen, this.o.top, true).catch(() => undefined);
  }

  private async dropFilter(): Promise<void> {
    if (!this.filterInPlace) return;
    this.filterInPlace = false;
    await dropCorFilter(this.o.graph, this.o.filter, this);
  }
}
