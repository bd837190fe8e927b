import { isAllocatedAbove } from '../blockdev/allocation.js';
import { BlockBackend } from '../blockdev/block-backend.js';
import { cowChild, findOverlay } from '../blockdev/chain.js';
import { CommitTopNode } from '../blockdev/drivers/commit-top.js';
import { dropIntermediate } from '../blockdev/drop-intermediate.js';
import { freezeChain, unfreezeChain } from '../blockdev/freeze.js';
import type { BlockGraph } from '../blockdev/graph.js';
import { appendOverlay } from '../blockdev/graph-edit.js';
import { GraphTransaction } from '../blockdev/graph-transaction.js';
import type { BlockNode } from '../blockdev/node.js';
import { type ReopenContext, reopenSetReadOnly } from '../blockdev/reopen.js';
import { errnoOf, strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../image/perm.js';
import { BlockJob, type BlockJobListener, type BlockJobOptions, type OnError } from './block-job.js';

/** The most one step copies (COMMIT_BUFFER_SIZE). */
export const COMMIT_BUFFER_SIZE = 512 << 10;

export interface CommitOptions extends BlockJobOptions {
  graph: BlockGraph;
  /** The top of the range committed (s->top's node), and the node it goes into. */
  top: BlockNode;
  base: BlockNode;
  /** The name written into the overlay of `top` instead of the base's own. */
  backingFile?: string;
  onError?: OnError;
  /** The name QEMU gives a node (bdrv_refresh_filename), written as the new backing file name. */
  nameOf: (n: BlockNode) => string;
  reopen: ReopenContext;
}

/**
 * A commit job below the active layer (block/commit.c): the data of the
 * layers from `top` down to just above `base` is copied into base, then
 * those layers leave the chain (the overlay of `top` names base in its
 * image). A commit_top filter above `top` lets the job write the chain
 * while the overlay keeps reading it; base is writable for the job only.
 */
export class CommitJob extends BlockJob {
  private readonly o: CommitOptions;
  private commitTop: CommitTopNode | undefined;
  /** The nodes of the range: what the job reads through (s->top) and where it writes (s->base). */
  private readonly topBlk = new BlockBackend({ perm: 0, shared: PERM_ALL });
  private baseBlk: BlockBackend | undefined;
  private baseOverlay: BlockNode | undefined;
  private baseWasReadOnly = false;
  private chainFrozen = false;

  constructor(id: string, events: BlockJobListener, opts: CommitOptions) {
    super(id, 'commit', events, opts);
    this.o = opts;
  }

  /** No drained section surrounds the start (no paused/running pair on qsd). */
  protected override get drainsOnStart(): boolean {
    return false;
  }

  override usesNode(node: object): boolean {
    return node === this.commitTop || this.nodes.has(node as BlockNode);
  }

  /**
   * commit_start after the job exists, in its order: base reopened
   * read-write, commit_top appended above `top`, the range's nodes held
   * (sharing writes, and reads only where only filters of base remain),
   * the chain frozen from commit_top to base, base held, and the two
   * BlockBackends — base's writing (and resizing if it is the smaller).
   * A failure leaves to abort() and earlyFail() what was done.
   */
  async setUp(filterNodeName: string | undefined): Promise<void> {
    const { graph, top, base } = this.o;
    const basePerm = PERM_CONSISTENT_READ | PERM_WRITE | (base.size() < top.size() ? PERM_RESIZE : 0);
    if (base.readOnly) {
      await reopenSetReadOnly(this.o.reopen, base, false);
      this.baseWasReadOnly = true;
    }
    const ct = new CommitTopNode(graph.assignName(filterNodeName));
    if (filterNodeName === undefined) ct.implicit = true;
    graph.add(ct, false);
    try {
      await GraphTransaction.run((tran) => appendOverlay(tran, ct, top));
    } catch (err) {
      await graph.discard(ct);
      throw err;
    }
    this.commitTop = ct;
    this.baseOverlay = findOverlay(top, base)!;
    await this.nodes.addIntermediate(top, base, cowChild(this.baseOverlay));
    freezeChain(ct, base);
    this.chainFrozen = true;
    await this.nodes.add('base', base, 0, PERM_ALL);
    this.baseBlk = new BlockBackend({ perm: basePerm, shared: PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED });
    await this.baseBlk.insert(base);
    await this.topBlk.insert(top);
  }

  /** commit_run: step by step, what a layer of the range holds is read from `top` and written into base, grown first if smaller. */
  protected async run(): Promise<void> {
    const { top, base } = this.o;
    const len = top.size();
    this.progressTotal = this.progressCurrent + len;
    if (base.size() < len) await base.resize(len);
    const buf = new Uint8Array(COMMIT_BUFFER_SIZE);
    let delay = 0;
    for (let offset = 0, n = 0; offset < len; offset += n) {
      await this.sleep(delay);
      let copy = false;
      let operation: 'read' | 'write' = 'read';
      let failed: string | undefined;
      try {
        const st = await isAllocatedAbove(top, this.baseOverlay, true, offset, COMMIT_BUFFER_SIZE);
        n = st.length;
        copy = st.allocated;
        if (copy) {
          const data = buf.subarray(0, n);
          await top.readInto(data, offset);
          operation = 'write';
          await base.write(offset, data);
        }
      } catch (err) {
        failed = errnoOf(err);
      }
      if (failed !== undefined) {
        // Report fails the job; ignore and stop try the same step again (stop after a resume).
        if (this.errorAction(this.o.onError ?? 'report', operation, failed) === 'report') throw new BlockError('IO', strerror(failed), { errno: failed });
        n = 0;
        continue;
      }
      this.progressCurrent += n;
      delay = copy ? this.rateLimitDelay(n) : 0;
    }
  }

  /** commit_prepare: the chain thaws, base's writer goes, and the committed layers leave the chain (bdrv_drop_intermediate). */
  override async prepare(): Promise<void> {
    this.thaw();
    await this.baseBlk?.remove();
    this.baseBlk = undefined;
    const ct = this.commitTop!;
    try {
      await dropIntermediate(ct, this.o.base, this.o.backingFile, this.o.nameOf, this.o.reopen);
    } finally {
      // Nobody uses commit_top any more (unless the graph could not change): it goes.
      await this.o.graph.release(ct);
    }
  }

  /**
   * commit_abort (also a failed set-up): the chain thaws, base's writer
   * and the job's links go, and commit_top's parents use `top` again.
   */
  override async abort(): Promise<void> {
    this.thaw();
    await this.baseBlk?.remove();
    this.baseBlk = undefined;
    await this.dropNodes();
    const ct = this.commitTop;
    this.commitTop = undefined;
    if (!ct || ct.isClosed) return;
    const below = ct.child('backing');
    if (below) await this.o.graph.moveParents(ct, below).catch(() => undefined);
    await this.o.graph.release(ct);
  }

  /** commit_clean: base read-only again if it was, and the reader of `top` goes. */
  override async clean(): Promise<void> {
    if (this.baseWasReadOnly) await reopenSetReadOnly(this.o.reopen, this.o.base, true).catch(() => undefined);
    this.baseWasReadOnly = false;
    await this.topBlk.remove();
  }

  private thaw(): void {
    if (this.chainFrozen) unfreezeChain(this.commitTop!, this.o.base);
    this.chainFrozen = false;
  }
}
