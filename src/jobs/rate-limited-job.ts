import { Job, type JobListener, type JobOptions } from './job.js';
import { RateLimiter } from './rate-limit.js';

/**
 * A block job with a `speed` (backup, mirror): its rate limiter runs on
 * the job's clock, and block-job-set-speed takes effect for the next
 * request, waking a job that sleeps on the old limit.
 */
export abstract class RateLimitedJob extends Job {
  speed: number;
  readonly limiter: RateLimiter;

  constructor(id: string, type: string, listener: JobListener, opts: JobOptions & { speed?: number }) {
    super(id, type, listener, opts);
    this.speed = opts.speed ?? 0;
    this.limiter = new RateLimiter(this.speed, () => this.clock.now());
  }

  setSpeed(speed: number): void {
    this.checkVerb('set-speed');
    this.speed = speed;
    this.limiter.setSpeed(speed);
    this.kick();
  }
}
