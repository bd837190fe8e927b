import { BlockError } from '../image/errors.js';
import { COPY_BUDGET_BYTES, CopyBudget } from './copy-budget.js';
import { type Clock, RealClock, VirtualClock } from '../blockdev/clock.js';
import { BlockNode } from '../blockdev/node.js';
import type { Job } from './job.js';

/** QEMU's id_wellformed (util/id.c), which job ids must satisfy. */
const WELL_FORMED = /^[A-Za-z][A-Za-z0-9._-]*$/;

/**
 * The job list (job.c's jobs): ids checked as QEMU checks them, newest
 * first as query-jobs lists them. Commands that drain the graph in QEMU
 * make running jobs report paused, then running; drainAll and drainNode
 * report the same pairs.
 */
export class JobManager {
  private readonly jobs: Job[] = [];
  /** The clock every job of this manager runs on; a virtual one advances by itself when all jobs wait on it. */
  readonly clock: Clock;
  /** The copy buffers the jobs' background copies share (CopyBudget). */
  readonly copyBudget = new CopyBudget(COPY_BUDGET_BYTES);

  constructor(clock: 'real' | 'virtual' = 'real') {
    this.clock = clock === 'virtual' ? new VirtualClock(() => this.idle()) : new RealClock();
  }

  /**
   * Whether only the virtual clock can move things on: every job waits on
   * it, or on requests of its own that faults' latencies hold on it (at
   * least as many are held as the jobs have in flight). Without held
   * requests this is every job waiting on the clock alone.
   */
  private idle(): boolean {
    const held = (this.clock as VirtualClock).heldRequests;
    let inFlight = 0;
    for (const j of this.jobs) {
      if (!j.waitsOnClockOrRequests) return false;
      inFlight += j.requestsInFlight;
    }
    return inFlight <= held;
  }

  /** Throws QEMU's error for an id a new job may not take. */
  checkId(id: string): void {
    if (!WELL_FORMED.test(id)) throw new BlockError('INVALID_ARGUMENT', `Invalid job ID '${id}'`);
    if (this.jobs.some((j) => j.id === id)) throw new BlockError('INVALID_ARGUMENT', `Job ID '${id}' already in use`);
  }

  /** Told whenever a job's progress changes (the daemon's job-progress crash faults). */
  onProgress: ((job: Job) => void) | undefined;

  add(job: Job): void {
    this.jobs.unshift(job);
    job.onProgress = (j) => this.onProgress?.(j);
    job.onFreeing = (p) => {
      this.freeing.add(p);
      void p.finally(() => this.freeing.delete(p)).catch(() => undefined);
    };
  }

  /** Dismissals whose freeing (the job's node links, and so image locks) is still under way. */
  private readonly freeing = new Set<Promise<void>>();

  /**
   * Resolves once every job being dismissed is gone, or undefined when
   * none is. QEMU frees a dismissed job in the same main-loop turn as its
   * last event, so no monitor command ever sees one half gone; the
   * monitors wait for this before running a command.
   */
  dismissalsSettled(): Promise<void> | undefined {
    if (this.freeing.size === 0) return undefined;
    return Promise.allSettled([...this.freeing]).then(() => undefined);
  }

  /**
   * bdrv_drain_all: every running job reports paused, then running (a
   * transaction, and the commands QEMU runs as one, begin with it).
   */
  drainAll(): void {
    for (const j of this.jobs) j.internalPause();
  }

  /** bdrv_drained_begin on one node: the running jobs that use it (QEMU drains its parents, and so their jobs) pause and resume. */
  drainNode(node: object): void {
    for (const j of this.jobs) if (j.usesNode(node)) j.internalPause();
  }

  /**
   * bdrv_drained_begin as QEMU 7.2 does it: the node's parents are
   * quiesced, and theirs in turn, so a job linked to the node or to any
   * node above it pauses and resumes (the jobs of nodes below stay as they are).
   */
  drainWithParents(node: BlockNode): void {
    const above = new Set<BlockNode>();
    const todo = [node];
    for (let n = todo.pop(); n; n = todo.pop()) {
      if (above.has(n)) continue;
      above.add(n);
      for (const c of n.parents) if (c.owner instanceof BlockNode) todo.push(c.owner);
    }
    for (const j of this.jobs) if ([...above].some((n) => j.usesNode(n))) j.internalPause();
  }

  /** Called when a job reaches `null`. */
  remove(job: Job): void {
    const i = this.jobs.indexOf(job);
    if (i >= 0) this.jobs.splice(i, 1);
  }

  find(id: string): Job | undefined {
    return this.jobs.find((j) => j.id === id);
  }

  list(): readonly Job[] {
    return this.jobs;
  }

  /** Daemon shutdown: every job cancelled and concluded. */
  async cancelAll(): Promise<void> {
    for (const j of [...this.jobs]) {
      if (j.status === 'concluded') await j.dismiss();
      else await j.cancelLocked().then(() => j.concludedPromise);
    }
  }
}
