import { Job, type JobListener, type JobOptions } from './job.js';
import { RateLimiter } from './rate-limit.js';

/**
 * A block job with a `speed` (backup, mirror): its rate limiter runs on
 * the job's clock, and block-job-set-speed takes effect for the next
 * request, waking a job that sleeps on the old limit.
 */
export abstract class RateLimitedJob extends Job {
  /** Bytes per second, 0 for no limit; exact as QMP gave it (an int64 may pass 2^53), reported back as given. */
  speed: number | bigint;
  readonly limiter: RateLimiter;

  constructor(id: string, type: string, listener: JobListener, opts: JobOptions & { speed?: number | bigint }) {
    super(id, type, listener, opts);
    this.speed = opts.speed ?? 0;
    // QEMU's slice quota is a double too (ratelimit_set_speed).
    this.limiter = new RateLimiter(Number(this.speed), () => this.clock.now());
  }

  /**
   * block-job-set-speed (block_job_set_speed_locked): the limit applies
   * from the next request; a sleeping job is woken unless the new speed
   * is a limit no higher than the old one (it would only sleep again). A
   * paused or busy job sleeps on no timer and is left alone.
   */
  setSpeed(speed: number | bigint): void {
    this.checkVerb('set-speed');
    const old = this.speed;
    this.speed = speed;
    this.limiter.setSpeed(Number(speed));
    if (Number(speed) !== 0 && speed <= old) return;
    if (this.isIdle) this.kick();
  }
}
