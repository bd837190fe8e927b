/** What made a step of a copy loop fail: the side of the copy and the errno, for the job's error policy. */
export interface StepFailure {
  operation: 'read' | 'write';
  errno: string;
}

/**
 * How a step's work settles: done, failed, or `undone` — it left its
 * write out because a step before it failed, so it must be done again in
 * its turn.
 */
export type StepOutcome = 'done' | 'undone' | StepFailure;

interface Step {
  offset: number;
  bytes: number;
  /** undefined while in flight. */
  outcome?: StepOutcome;
  /** What the work threw (a fault of our own, not an I/O error): it fails the job when the step is met. */
  thrown?: { error: unknown };
  done: Promise<void>;
}

/** A step at the front of the window that did not succeed: to be met as the one-at-a-time loop would meet it. */
export interface UnfinishedStep {
  offset: number;
  bytes: number;
  /** undefined: undone, never tried to the end. */
  failure?: StepFailure;
}

/**
 * The steps of a job's copy loop (commit_run's) run several at a time, but
 * are met in order, as the loop QEMU runs one at a time meets them: a
 * step's bytes count only once every step before it has succeeded, and
 * the first failure is met with the progress QEMU would report then. A
 * step's work settles with its outcome; one that throws instead (a bug, not
 * an I/O error) fails the job when its step is met.
 */
export class StepWindow {
  private readonly steps: Step[] = [];
  private running = 0;

  /** Steps started whose work has not settled. */
  get inFlight(): number {
    return this.running;
  }

  /** Starts `work` for [offset, offset + bytes); `track` sees its promise (the job's requests in flight). */
  start(offset: number, bytes: number, work: () => Promise<StepOutcome>, track: (p: Promise<void>) => void = () => undefined): void {
    const step: Step = { offset, bytes, done: Promise.resolve() };
    this.running++;
    step.done = work().then(
      (outcome) => this.settle(step, outcome),
      (error: unknown) => {
        step.thrown = { error };
        this.settle(step, 'undone');
      },
    );
    track(step.done);
    this.steps.push(step);
  }

  /** A step that needs no I/O (nothing allocated to copy): it counts in its turn. */
  skip(offset: number, bytes: number): void {
    this.steps.push({ offset, bytes, outcome: 'done', done: Promise.resolve() });
  }

  /** Waits until fewer than `max` steps are in flight. */
  async room(max: number): Promise<void> {
    while (this.running >= max) await Promise.race(this.inFlightSteps());
  }

  /** Waits until no step is in flight. */
  async drain(): Promise<void> {
    while (this.running > 0) await Promise.all(this.inFlightSteps());
  }

  /** Whether a settled step did not succeed (failed or undone) and waits to be met. */
  get unfinished(): boolean {
    return this.steps.some((s) => s.outcome !== undefined && s.outcome !== 'done');
  }

  /** The bytes of the steps at the front that succeeded, which leave the window. */
  takeDone(): number {
    let bytes = 0;
    while (this.steps.length > 0 && this.steps[0]!.outcome === 'done') bytes += this.steps.shift()!.bytes;
    return bytes;
  }

  /**
   * The step at the front if it settled without success (call takeDone
   * first). It stays there, holding back the count, until succeedFirst.
   * One whose work threw throws that here, in its turn, as the one-step
   * loop would have.
   */
  firstUnfinished(): UnfinishedStep | undefined {
    const s = this.steps[0];
    if (s?.outcome === undefined || s.outcome === 'done') return undefined;
    if (s.thrown) throw s.thrown.error;
    return { offset: s.offset, bytes: s.bytes, ...(s.outcome === 'undone' ? {} : { failure: s.outcome }) };
  }

  /** The step at the front was done again, and succeeded: it counts at the next takeDone. */
  succeedFirst(): void {
    const s = this.steps[0];
    if (s) s.outcome = 'done';
  }

  private inFlightSteps(): Promise<void>[] {
    return this.steps.filter((s) => s.outcome === undefined).map((s) => s.done);
  }

  private settle(step: Step, outcome: StepOutcome): void {
    step.outcome = outcome;
    this.running--;
  }
}
