/**
 * QEMU's slice rate limiter (include/qemu/ratelimit.h) with the block-job
 * slice of 100 ms: a slice's quota is speed × 0.1 s (at least 1 byte);
 * work is charged in whole tasks (a task may overrun the quota and is
 * never split), an overrun stretches the slice, and the next task waits
 * for its end. Time comes from the job's clock (clock.ts).
 */
export const SLICE_NS = 100_000_000;

export class RateLimiter {
  private sliceStart = 0;
  private sliceEnd = 0;
  private quota = 0;
  private dispatched = 0;

  constructor(
    speed: number,
    private readonly now: () => number,
  ) {
    this.setSpeed(speed);
  }

  /** Bytes per second; 0 turns throttling off. Takes effect for the next request. */
  setSpeed(speed: number): void {
    this.quota = speed === 0 ? 0 : Math.max((speed * SLICE_NS) / 1e9, 1);
  }

  /** Whether requests are throttled at all. */
  get limited(): boolean {
    return this.quota !== 0;
  }

  /**
   * Records `n` bytes about to be sent; returns how many nanoseconds to
   * wait before the next request (0: none). `delay(0)` asks without
   * charging, as the block-copy loop does before each task.
   */
  delay(n: number): number {
    if (this.quota === 0) return 0;
    const now = this.now();
    if (this.sliceEnd < now) {
      this.sliceStart = now;
      this.sliceEnd = now + SLICE_NS;
      this.dispatched = 0;
    }
    this.dispatched += n;
    if (this.dispatched < this.quota) return 0;
    this.sliceEnd = this.sliceStart + Math.floor((this.dispatched / this.quota) * SLICE_NS);
    return this.sliceEnd - now;
  }
}
