import { isCompleted } from './status.js';
import type { Job } from './job.js';

/**
 * Jobs that complete together (job.c JobTxn): a job that finishes waits
 * for the others; when all are done they become pending and are finalized
 * together (automatically unless one has auto-finalize off). When one
 * fails, the others are cancelled and every job is finalized on the abort
 * path. A job created alone has a transaction of its own.
 */
export class JobTxn {
  private readonly jobs: Job[] = [];
  private aborting = false;
  /** Jobs whose run has ended, each resolved once (job_finish_sync). */
  private readonly ended = new Map<Job, () => void>();
  private readonly endedPromises = new Map<Job, Promise<void>>();

  add(job: Job): void {
    this.jobs.push(job);
    this.endedPromises.set(job, new Promise<void>((r) => this.ended.set(job, r)));
  }

  remove(job: Job): void {
    const i = this.jobs.indexOf(job);
    if (i >= 0) this.jobs.splice(i, 1);
  }

  /** A job's run ended (or a never-started job was cancelled): job_completed. */
  async jobCompleted(job: Job): Promise<void> {
    this.ended.get(job)?.();
    if (isCompleted(job.status)) return;
    if (job.error !== undefined) {
      job.transition('aborting');
      await this.abort(job);
      return;
    }
    job.transition('waiting');
    if (this.jobs.some((j) => !isCompleted(j.status))) return;
    for (const j of this.jobs) j.toPending();
    if (this.jobs.every((j) => j.autoFinalize)) await this.finalize();
  }

  /** job_do_finalize: prepare every job; commit all, or abort all when a prepare failed. */
  async finalize(): Promise<void> {
    for (const j of [...this.jobs]) {
      try {
        await j.prepare();
      } catch (err) {
        j.error = err instanceof Error ? err.message : String(err);
        await this.abort(j);
        return;
      }
    }
    for (const j of [...this.jobs]) await j.finalizeSingle();
  }

  /**
   * job_completed_txn_abort: the first failure cancels the other jobs,
   * waits for each to stop, and finalizes every job on the abort path.
   */
  async abort(failed: Job): Promise<void> {
    if (this.aborting) return;
    this.aborting = true;
    for (const other of this.jobs) if (other !== failed) other.requestCancel();
    while (this.jobs.length > 0) {
      const other = this.jobs[0]!;
      if (!isCompleted(other.status) && other.hasStarted) await this.endedPromises.get(other);
      await other.finalizeSingle();
    }
  }
}
