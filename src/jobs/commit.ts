import { isAllocatedAbove } from '../blockdev/allocation.js';
import { BlockBackend } from '../blockdev/block-backend.js';
import { cowChild, findOverlay } from '../blockdev/chain.js';
import { CommitTopNode } from '../blockdev/drivers/commit-top.js';
import { dropIntermediate } from '../blockdev/drop-intermediate.js';
import { injectsFaultsBelow } from '../blockdev/faults/injected.js';
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
import { type StepOutcome, StepWindow } from './step-window.js';

/** The most one step copies (COMMIT_BUFFER_SIZE). */
export const COMMIT_BUFFER_SIZE = 512 << 10;
/** Steps in flight at once without a speed limit (mirror's MAX_IN_FLIGHT): at most 8 MiB of buffers. */
export const COMMIT_MAX_IN_FLIGHT = 16;

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
  /** The copy steps in flight (run), and the buffers of those that settled. */
  private readonly steps = new StepWindow();
  private readonly buffers: Uint8Array[] = [];
  /** Settles once the write of the step started last has been issued: with whether that step and those before it read their data. */
  private writeTurn: Promise<boolean> = Promise.resolve(true);
  /**
   * A write into base failed since the steps were last met in order: the
   * steps whose turn comes now leave their write undone, as QEMU's loop
   * writes nothing more before it retries the failed step — the freed
   * clusters then go to that retry, where QEMU's go.
   */
  private writeFailed = false;
  private unyielded = 0;

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

  /**
   * commit_run: step by step, what a layer of the range holds is read
   * from `top` and written into base, grown first if smaller. Up to
   * COMMIT_MAX_IN_FLIGHT steps run at once (QEMU runs one: its requests
   * cost far less than a Node program's), met in order by the StepWindow;
   * base's writes issue in offset order, so its clusters are allocated
   * where QEMU's loop puts them, and none after a step whose read failed.
   * With a speed limit, or faults injected below `top`, the loop is
   * QEMU's, a step at a time: its timing and its failures are QEMU's.
   */
  protected async run(): Promise<void> {
    const { top, base } = this.o;
    const len = top.size();
    this.progressTotal = this.progressCurrent + len;
    if (base.size() < len) await base.resize(len);
    let delay = 0;
    try {
      for (let offset = 0; offset < len; ) {
        await this.pauseBetweenSteps(delay);
        this.progressCurrent += this.steps.takeDone();
        if (this.steps.unfinished) {
          delay = await this.recover(delay);
          continue;
        }
        let st: { allocated: boolean; length: number };
        try {
          st = await isAllocatedAbove(top, this.baseOverlay, true, offset, COMMIT_BUFFER_SIZE);
        } catch (err) {
          // Met before the steps in flight settled: those come first, then the status is asked again, in its turn.
          if (this.steps.inFlight > 0) {
            delay = await this.recover(delay);
            continue;
          }
          const errno = errnoOf(err);
          if (this.errorAction(this.policy, 'read', errno) === 'report') throw new BlockError('IO', strerror(errno), { errno });
          continue;
        }
        const n = st.length;
        if (!st.allocated) {
          this.steps.skip(offset, n);
          delay = 0;
        } else if (this.limiter.limited || injectsFaultsBelow(top)) {
          await this.steps.drain();
          this.startCopy(offset, n);
          await this.steps.drain();
          // A failed step leaves the delay as it was (commit_run's continue).
          if (!this.steps.unfinished) delay = this.rateLimitDelay(n);
        } else {
          await this.steps.room(COMMIT_MAX_IN_FLIGHT);
          // A step that settled meanwhile without success is met before this one starts.
          if (this.steps.unfinished) continue;
          this.startCopy(offset, n);
          delay = 0;
        }
        offset += n;
        // Counted before the sleep, as commit_run does.
        this.progressCurrent += this.steps.takeDone();
      }
      await this.recover(delay);
    } finally {
      await this.steps.drain();
    }
  }

  private get policy(): OnError {
    return this.o.onError ?? 'report';
  }

  /**
   * job_sleep_ns(delay) between steps. Without a delay and with steps in
   * flight the turn of the event loop is skipped (their I/O lets it turn),
   * so the next steps' requests go out together, where the files merge
   * adjacent ones; every COMMIT_MAX_IN_FLIGHT steps the job yields all
   * the same, as mirror's loop does.
   */
  private async pauseBetweenSteps(delay: number): Promise<void> {
    if (delay === 0 && this.steps.inFlight > 0 && ++this.unyielded < COMMIT_MAX_IN_FLIGHT) return this.skipSleep();
    this.unyielded = 0;
    await this.sleep(delay);
  }

  /** A job pauses with none of its steps in flight, and with the progress QEMU's loop would have made by then. */
  protected override async pausePoint(): Promise<void> {
    if ((this.paused || this.cancelled) && this.steps.inFlight > 0) {
      await this.steps.drain();
      this.progressCurrent += this.steps.takeDone();
    }
    return super.pausePoint();
  }

  /**
   * The steps that did not succeed, met in order as commit_run meets them:
   * one left undone is done again; a failure goes to the policy (report
   * fails the job), then the loop sleeps — the pause point, where stop
   * waits for the resume — and tries that step again by itself until it
   * succeeds. The steps after it count then. Returns the delay for the
   * next sleep.
   */
  private async recover(delay: number): Promise<number> {
    await this.steps.drain();
    for (;;) {
      this.progressCurrent += this.steps.takeDone();
      const step = this.steps.firstUnfinished();
      if (!step) {
        // The window is empty: the next step's write goes first.
        this.writeTurn = Promise.resolve(true);
        return delay;
      }
      const retry = () => {
        // Everything in flight has settled: this step is the only one writing.
        this.writeFailed = false;
        return this.copy(step.offset, step.bytes);
      };
      let failure = step.failure ?? (await retry());
      while (typeof failure === 'object') {
        if (this.errorAction(this.policy, failure.operation, failure.errno) === 'report') {
          throw new BlockError('IO', strerror(failure.errno), { errno: failure.errno });
        }
        await this.sleep(delay);
        failure = await retry();
      }
      this.steps.succeedFirst();
      delay = this.rateLimitDelay(step.bytes);
    }
  }

  /** Starts a step's copy in the window; its write waits for the turn of the step before. */
  private startCopy(offset: number, bytes: number): void {
    const turn = this.writeTurn;
    let pass!: (readOk: boolean) => void;
    this.writeTurn = new Promise<boolean>((r) => (pass = r));
    this.steps.start(offset, bytes, () => this.copy(offset, bytes, turn, pass), (p) => void this.trackIo(p));
  }

  /**
   * One step's copy: read through the top of the range, then, once `turn`
   * comes, written into base. `pass` hands the turn on once the write is
   * issued, saying whether this step and those before it read their data.
   */
  private async copy(offset: number, bytes: number, turn = Promise.resolve(true), pass: (readOk: boolean) => void = () => undefined): Promise<StepOutcome> {
    const buf = this.buffers.pop() ?? new Uint8Array(COMMIT_BUFFER_SIZE);
    const data = buf.subarray(0, bytes);
    try {
      try {
        await this.o.top.readInto(data, offset);
      } catch (err) {
        return { operation: 'read', errno: errnoOf(err) };
      }
      if (!(await turn) || this.writeFailed) return 'undone';
      const write = this.o.base.write(offset, data);
      pass(true);
      try {
        await write;
      } catch (err) {
        this.writeFailed = true;
        return { operation: 'write', errno: errnoOf(err) };
      }
      return 'done';
    } finally {
      // Not passed on yet: this step's read failed, or one before it did (a promise settles once: after pass(true) this is nothing).
      pass(false);
      this.buffers.push(buf);
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
