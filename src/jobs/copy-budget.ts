/**
 * The copy buffers a daemon's background copies hold at once, across all
 * its jobs. A job's copy tasks keep their buffers (pooled for its copy
 * pass), so sixteen backups of sixteen 1 MiB tasks each peaked at 146 MiB
 * of RSS; QEMU frees a task's buffer when it ends. Each buffer is paid for
 * by a share, held until the job's pass ends. A job's first share is
 * taken even past the budget, so every job always moves; a job that finds
 * no share waits for its own tasks, never for another job's (a pause, a
 * cancel or a held request of one job does not stall the others).
 */
export class CopyBudget {
  private free: number;

  constructor(readonly bytes: number) {
    this.free = bytes;
  }

  /** Takes `bytes` if that much is free, or anyway when `always` (a job's first task). */
  tryTake(bytes: number, always = false): boolean {
    if (this.free < bytes && !always) return false;
    this.free -= bytes;
    return true;
  }

  give(bytes: number): void {
    this.free += bytes;
  }

  /** What is free now (less than nothing while jobs' first shares go past the budget). */
  get available(): number {
    return this.free;
  }
}

/** What one daemon's background copies may hold: one job's MAX_TASKS tasks of 1 MiB (and one task per job beyond that). */
export const COPY_BUDGET_BYTES = 16 << 20;
