import { BlockError } from '../image/errors.js';
import { type Clock, RealClock } from '../blockdev/clock.js';
import type { HeldWait } from '../blockdev/faults/held.js';
import { acceptsVerb, canTransition, isCompleted, type JobStatus, type JobVerb } from './status.js';
import { JobTxn } from './txn.js';

/** What a job tells the outside world (QMP turns these into events). */
export interface JobListener {
  /** JOB_STATUS_CHANGE: only real changes are reported. */
  statusChanged(job: Job): void;
  /** BLOCK_JOB_PENDING (jobs with auto-finalize off). */
  pending(job: Job): void;
  /** BLOCK_JOB_COMPLETED (job.error set when it failed) or BLOCK_JOB_CANCELLED. */
  finished(job: Job, cancelled: boolean): void;
  /** The job reached `null` and left the job list. */
  removed(job: Job): void;
  /** BLOCK_JOB_READY: the job's target is in sync and it waits to be completed (mirror). */
  ready?(job: Job): void;
}

export interface JobOptions {
  autoFinalize?: boolean;
  autoDismiss?: boolean;
  /** Grouped with other jobs (a transaction with completion-mode grouped). */
  txn?: JobTxn;
  /** Where sleeps and rate limits take their time from (default: real time). */
  clock?: Clock;
}

const REAL_CLOCK = new RealClock();

/** Thrown at a pause point of a cancelled job. */
export class JobCancelled extends Error {
  constructor() {
    super('Operation canceled');
  }
}

const jobError = (message: string) => new BlockError('INVALID_ARGUMENT', message);

/**
 * A long-running operation with QEMU's job lifecycle (job.c): the status
 * table, the verbs, user and internal pauses at pause points,
 * cancellation, and completion through its transaction (txn.ts) with
 * prepare/commit/abort/clean. Subclasses implement `run` and call
 * `pausePoint()` (or `sleep()`) between units of work.
 */
export abstract class Job {
  status: JobStatus = 'undefined';
  readonly autoFinalize: boolean;
  readonly autoDismiss: boolean;
  readonly txn: JobTxn;
  protected readonly clock: Clock;
  /** In a wait only time or a verb can end (a clock sleep, an idle sync=none job): a virtual clock may move on. */
  private idleWait = false;
  /**
   * Requests the job started and has not seen end (copies in flight while
   * it sleeps on its rate limit): a virtual clock waits for them, since in
   * real time they would end while the sleep runs, not after it.
   */
  private ioInFlight = 0;
  private progress = 0;
  /** Told of every change of progressCurrent (the manager's listener: crash faults at a job's progress). */
  onProgress: ((job: Job) => void) | undefined;
  /** Progress as query-jobs reports it. */
  get progressCurrent(): number {
    return this.progress;
  }
  set progressCurrent(value: number) {
    this.progress = value;
    this.onProgress?.(this);
  }
  progressTotal = 0;
  /** Set when the job failed or was cancelled (the text QMP reports). */
  error: string | undefined;
  /** Force-cancelled (job_is_cancelled): the job stops and ends as cancelled. */
  cancelled = false;
  /** A cancel was asked for, force or not (job_cancel_requested): a ready mirror then finishes without its pivot. */
  cancelRequested = false;
  userPaused = false;
  private pauseCount = 0;
  private started = false;
  private wake: (() => void) | undefined;
  /** A drain came while the job was busy: QEMU holds it at its next pause point, so that sleep does not happen. */
  private drainedSleep = false;
  private concludedResolve!: () => void;
  /** Resolves when the job reaches `concluded` (its events are out by then). */
  readonly concludedPromise = new Promise<void>((r) => (this.concludedResolve = r));
  private removedResolve!: () => void;
  /** Resolves when the job reaches `null` and leaves the job list. */
  readonly removedPromise = new Promise<void>((r) => (this.removedResolve = r));
  /** The job's way to `null` once begun: it is freed once, whoever else dismisses it meanwhile. */
  private dismissal: Promise<void> | undefined;
  private finalizing: Promise<void> | undefined;

  constructor(
    readonly id: string,
    readonly type: string,
    private readonly listener: JobListener,
    opts: JobOptions = {},
  ) {
    this.autoFinalize = opts.autoFinalize ?? true;
    this.autoDismiss = opts.autoDismiss ?? true;
    this.txn = opts.txn ?? new JobTxn();
    this.clock = opts.clock ?? REAL_CLOCK;
    this.txn.add(this);
    this.transition('created');
  }

  /** The job's work. Throwing fails the job with the error's message. */
  protected abstract run(): Promise<void>;
  /** Finalization steps, run in transaction order (see txn.ts). */
  async prepare(): Promise<void> {}
  async commit(): Promise<void> {}
  async abort(): Promise<void> {}
  async clean(): Promise<void> {}
  /** What goes with the job once it reached `null` (block_job_free: a block job's links to its nodes). */
  protected async free(): Promise<void> {}

  /** A block job (block_job_create in QEMU): it has BLOCK_JOB_* events and shows in query-block-jobs. */
  get isBlockJob(): boolean {
    return true;
  }

  /** query-block-jobs' busy: the job's coroutine is working rather than waiting for time or a verb (only jobs that track it say so). */
  get busy(): boolean {
    return false;
  }

  /** Whether the job waits only for time to pass or a verb (a sleep, an idle wait). */
  protected get isIdle(): boolean {
    return this.idleWait;
  }

  get paused(): boolean {
    return this.pauseCount > 0;
  }
  get hasStarted(): boolean {
    return this.started;
  }

  transition(to: JobStatus): void {
    if (!canTransition(this.status, to)) throw new Error(`job ${this.id}: illegal transition ${this.status} -> ${to}`);
    const changed = this.status !== to;
    this.status = to;
    if (changed) this.listener.statusChanged(this);
    this.clock.poke();
    if (to === 'concluded') this.concludedResolve();
    if (to === 'null') {
      this.listener.removed(this);
      this.removedResolve();
    }
  }

  /** QEMU's job_apply_verb: refuses a verb the current status does not accept. */
  checkVerb(verb: JobVerb): void {
    if (!acceptsVerb(this.status, verb)) throw jobError(`Job '${this.id}' in state '${this.status}' cannot accept command verb '${verb}'`);
  }

  /** created -> running; QEMU drains the graph while setting a job up, hence the paused/running pair (for jobs whose setup drains). */
  start(): void {
    this.transition('running');
    this.started = true;
    if (this.drainsOnStart) this.internalPause();
    void this.execute();
  }

  /** Whether setting the job up drains a graph it is already in (backup's transaction drain); a mirror drains before it exists. */
  protected get drainsOnStart(): boolean {
    return true;
  }

  /** job_transition_to_ready: BLOCK_JOB_READY, then the job waits for job-complete (or a cancel). */
  protected transitionToReady(): void {
    this.transition('ready');
    this.listener.ready?.(this);
  }

  get isReady(): boolean {
    return this.status === 'ready' || this.status === 'standby';
  }

  /**
   * job-complete / block-job-complete (job_complete_locked): the verb table
   * first, then jobs that cannot complete (or were asked to cancel) refuse
   * in QEMU's words.
   */
  complete(): void {
    this.checkVerb('complete');
    if (this.cancelRequested || !this.onComplete()) throw jobError(`The active block job '${this.id}' cannot be completed`);
  }

  /** The driver's complete: returns false when the job type has none (backup). */
  protected onComplete(): boolean {
    return false;
  }

  /** The driver's cancel (job->driver->cancel): whether the request becomes a force cancel. Jobs without one always force. */
  protected cancelIsForced(_force: boolean): boolean {
    return true;
  }

  /** Whether job-cancel answers only once the job has concluded (as observed for backup); a mirror answers at once. */
  protected get cancelWaitsForConclusion(): boolean {
    return true;
  }

  /** Whether the job works on this node (a drain of it pauses the job for a moment). */
  usesNode(_node: object): boolean {
    return false;
  }

  /**
   * A drain of the graph (another job being set up, a transaction, the
   * shutdown): a running job reports paused, then running, and a ready one
   * standby, then ready (job_pause_point's two states). Like QEMU's, the
   * pause enters a sleeping job, so its sleep ends there
   * (child_job_drained_begin's job_pause); a busy one skips its next sleep.
   */
  internalPause(): void {
    if ((this.status !== 'running' && this.status !== 'ready') || this.paused) return;
    const from = this.status;
    this.transition(from === 'ready' ? 'standby' : 'paused');
    this.transition(from);
    // A busy job is held at its next pause point instead: its next sleep is spent there (job_sleep_ns skips the timer).
    if (this.wake) this.kick();
    else this.drainedSleep = true;
  }

  private async execute(): Promise<void> {
    let failure: unknown;
    try {
      await this.run();
    } catch (err) {
      failure = err;
    }
    if (this.cancelled) this.error ??= 'Operation canceled';
    else if (failure !== undefined) this.error ??= failure instanceof Error ? failure.message : String(failure);
    // job_co_entry hands the rest to the main loop (job_exit in a bottom half): a job that ends at once does so after the reply that started it.
    await new Promise<void>((r) => setImmediate(r));
    await this.txn.jobCompleted(this);
  }

  /** Where the job may pause or stop: waits while paused, throws JobCancelled once cancelled. */
  protected async pausePoint(): Promise<void> {
    if (this.cancelled) throw new JobCancelled();
    if (this.paused && !this.cancelled) {
      const from = this.status;
      this.transition(from === 'ready' ? 'standby' : 'paused');
      // Woken while still paused (a speed change), it stays paused, and says nothing.
      while (this.paused && !this.cancelled) await new Promise<void>((r) => (this.wake = r));
      this.transition(from);
    }
    if (this.cancelled) throw new JobCancelled();
  }

  /** Whether the job can only move on when time passes or a verb reaches it (a virtual clock's auto-advance asks). */
  get waitsOnClockOnly(): boolean {
    return this.ioInFlight === 0 && (this.status !== 'running' || this.idleWait);
  }

  /** Requests of the job's own in flight (a virtual clock asks whether faults' latencies hold them all). */
  get requestsInFlight(): number {
    return this.ioInFlight;
  }

  /** Waiting on the clock or on its own requests: nothing else would move it on. */
  get waitsOnClockOrRequests(): boolean {
    return this.ioInFlight > 0 || this.status !== 'running' || this.idleWait;
  }

  /** Counts a request of the job's own as in flight until it settles (see ioInFlight); returns it. */
  protected trackIo<T>(request: Promise<T>): Promise<T> {
    this.ioInFlight++;
    const settled = () => {
      if (--this.ioInFlight === 0) this.clock.poke();
    };
    request.then(settled, settled);
    return request;
  }

  /**
   * Sleeps `ns` nanoseconds of the job's clock (rate limiting), cut short
   * by a pause, resume, cancel or speed change. Without a delay the job
   * still lets the event loop turn once (job_sleep_ns(0) yields too), so a
   * job whose steps need no I/O cannot starve the monitor.
   */
  protected async sleep(ns: number): Promise<void> {
    if (this.drainedSleep) {
      this.drainedSleep = false;
      ns = 0;
    }
    // job_sleep_ns: a job cancelled or asked to pause meanwhile does not go to sleep first.
    if (ns > 0 && !this.cancelled && !this.paused) {
      const s = this.clock.sleep(ns);
      this.wake = s.wake;
      await this.idle(s.done);
      this.wake = undefined;
    } else {
      await new Promise<void>((r) => setImmediate(r));
    }
    await this.pausePoint();
  }

  /**
   * sleep(0) without the turn of the event loop, for a job whose own I/O
   * in flight lets the loop turn: a drain that came meanwhile is spent
   * here, as the sleep would have spent it, and the pause point is passed.
   */
  protected async skipSleep(): Promise<void> {
    this.drainedSleep = false;
    await this.pausePoint();
  }

  /** Waits until a verb (pause, cancel, speed change…) kicks the job: sync=none has nothing else to do. */
  protected async waitForKick(): Promise<void> {
    if (!this.cancelled && !this.paused) await this.idle(new Promise<void>((r) => (this.wake = r)));
    await this.pausePoint();
  }

  private async idle(until: Promise<void>): Promise<void> {
    this.idleWait = true;
    this.clock.poke();
    try {
      await until;
    } finally {
      this.idleWait = false;
    }
  }

  protected kick(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** job-pause / block-job-pause. */
  userPause(): void {
    this.checkVerb('pause');
    if (this.userPaused) throw jobError('Job is already paused');
    this.userPaused = true;
    this.pause();
  }

  /** job-resume / block-job-resume. */
  userResume(): void {
    // QEMU checks the user pause before the verb table, so a pending or
    // concluded job answers "not paused" rather than the verb error.
    if (!this.userPaused) throw jobError("Can't resume a job that was not paused");
    this.checkVerb('resume');
    this.userPaused = false;
    this.resume();
  }

  /** A pause request (user, or an error policy of 'stop'). */
  pause(): void {
    this.pauseCount++;
    this.kick();
  }
  resume(): void {
    if (this.pauseCount > 0) this.pauseCount--;
    if (this.pauseCount === 0) this.kick();
  }

  /**
   * job-cancel / block-job-cancel (always a force cancel: the jobs here
   * have no soft cancel). Resolves once the job has concluded, so its
   * events precede the command's reply, as observed with QEMU.
   */
  async cancel(force = true): Promise<void> {
    this.checkVerb('cancel');
    await this.cancelLocked(force);
    if (this.status === 'null' || !this.cancelWaitsForConclusion) return;
    // A request held by injection (a blkdebug breakpoint, a stall) keeps the job from concluding until a
    // command lets it go: QEMU answers then without waiting, and so must we, or that command is never read.
    const held = this.whenRequestHeld();
    if (!held) return this.concludedPromise;
    try {
      await Promise.race([this.concludedPromise, held.promise]);
    } finally {
      held.cancel();
    }
  }

  /** Resolves once a request of the job's nodes is held by injection; undefined when none can be (see BlockJob). */
  protected whenRequestHeld(): HeldWait | undefined {
    return undefined;
  }

  /** QEMU's job_cancel_locked, without the verb check (dismissing a concluded job, a transaction abort). */
  async cancelLocked(force = true): Promise<void> {
    if (this.status === 'concluded') {
      await this.toNull();
      return;
    }
    this.requestCancel(force);
    if (!this.started) await this.txn.jobCompleted(this);
    else if (isCompleted(this.status)) {
      // A soft cancel of a job whose work is over changes nothing (job_cancel_async ignores it).
      if (this.cancelled) await this.txn.abort(this);
    }
  }

  /**
   * job_cancel_async: the driver decides whether the request is forced; a
   * user pause is dropped; a soft request on a job whose work is over is
   * ignored. Then the job is woken.
   */
  requestCancel(force = true): void {
    force = this.cancelIsForced(force);
    if (this.userPaused) {
      this.userPaused = false;
      if (this.pauseCount > 0) this.pauseCount--;
    }
    if (force || !isCompleted(this.status)) {
      this.cancelRequested = true;
      if (force) {
        this.cancelled = true;
        this.error ??= 'Operation canceled';
      }
    }
    this.kick();
  }

  /** job-finalize: the whole transaction. */
  async finalize(): Promise<void> {
    this.checkVerb('finalize');
    await this.txn.finalize();
  }

  /** job-dismiss: refused at once in another state; resolves once what went with the job is gone. */
  dismiss(): Promise<void> {
    this.checkVerb('dismiss');
    return this.toNull();
  }

  /**
   * job_do_dismiss: the job goes to `null` and is freed. QEMU announces
   * `null` first but frees in the same main-loop turn, so no command sees
   * the job half gone; here freeing waits (its links' permissions), so it
   * comes first and `null` says it is over. A dismissal meanwhile (a
   * daemon shutting down as the job concludes) waits for the same one.
   */
  private toNull(): Promise<void> {
    if (!this.dismissal) {
      this.dismissal = (async () => {
        await this.free();
        this.transition('null');
      })();
      this.onFreeing?.(this.dismissal);
    }
    return this.dismissal;
  }

  /** Told when a dismissal begins (the manager holds monitor commands until it is over). */
  onFreeing: ((dismissal: Promise<void>) => void) | undefined;

  /**
   * Called by the transaction: the finalize steps for this job, events,
   * conclusion. Once: a daemon shutting down cancels a job whose run has
   * just ended, so the abort path and the normal one can both reach here.
   */
  finalizeSingle(): Promise<void> {
    this.finalizing ??= this.finalizeOnce();
    return this.finalizing;
  }

  private async finalizeOnce(): Promise<void> {
    if (this.cancelled) this.error ??= 'Operation canceled';
    if (this.error !== undefined) this.transition('aborting');
    if (this.error === undefined) await this.commit();
    else await this.abort();
    await this.clean();
    if (this.started) this.listener.finished(this, this.cancelled);
    this.txn.remove(this);
    this.transition('concluded');
    if (this.autoDismiss || !this.started) await this.toNull();
  }

  /** Setup failed after the job was created (job_early_fail): created -> null, nothing else. */
  async earlyFail(): Promise<void> {
    await this.clean();
    this.txn.remove(this);
    await this.toNull();
  }

  /** Entering pending: jobs that wait for job-finalize say so. */
  toPending(): void {
    this.transition('pending');
    if (!this.autoFinalize) this.listener.pending(this);
  }
}
