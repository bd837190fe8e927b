import { BlockError } from '../image/errors.js';
import { type Clock, RealClock, VirtualClock } from './clock.js';
import type { Job } from './job.js';

/** QEMU's id_wellformed (util/id.c), which job ids must satisfy. */
const WELL_FORMED = /^[A-Za-z][A-Za-z0-9._-]*$/;

/**
 * The job list (job.c's jobs): ids checked as QEMU checks them, newest
 * first as query-jobs lists them. Creating a job drains the graph in QEMU,
 * which makes the running jobs report paused, then running; the same
 * pair is reported here.
 */
export class JobManager {
  private readonly jobs: Job[] = [];
  /** The clock every job of this manager runs on; a virtual one advances by itself when all jobs wait on it. */
  readonly clock: Clock;

  constructor(clock: 'real' | 'virtual' = 'real') {
    this.clock = clock === 'virtual' ? new VirtualClock(() => this.jobs.every((j) => j.waitsOnClockOnly)) : new RealClock();
  }

  /** Throws QEMU's error for an id a new job may not take. */
  checkId(id: string): void {
    if (!WELL_FORMED.test(id)) throw new BlockError('INVALID_ARGUMENT', `Invalid job ID '${id}'`);
    if (this.jobs.some((j) => j.id === id)) throw new BlockError('INVALID_ARGUMENT', `Job ID '${id}' already in use`);
  }

  /** `drain`: setting the job up drains the graph, pausing running block jobs for a moment (not so for a create job). */
  add(job: Job, drain = true): void {
    if (drain) for (const j of this.jobs) j.internalPause();
    this.jobs.unshift(job);
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
      if (j.status === 'concluded') j.dismiss();
      else await j.cancelLocked().then(() => j.concludedPromise);
    }
  }
}
