/**
 * The leaky-bucket arithmetic of QEMU's util/throttle.c, in the same
 * floating-point steps, so a throttled workload is scheduled at exactly
 * the nanoseconds QEMU would schedule it.
 *
 * Contract: before a request runs, `computeWait(now, isWrite)` leaks the
 * buckets for the time passed and says how long the request must wait
 * (0: it may run); when it runs, `account(isWrite, bytes)` fills them.
 * Levels drain at the average rate; a bucket is full at max × burst
 * length (avg / 10 without a burst rate, so short bursts still pass).
 */
import { BPS_READ, BPS_TOTAL, BPS_WRITE, copyConfig, type LeakyBucket, newThrottleConfig, OPS_READ, OPS_TOTAL, OPS_WRITE, type ThrottleConfig } from './config.js';

const NS = 1e9;

/** throttle_leak_bucket */
function leak(bkt: LeakyBucket, deltaNs: number): void {
  bkt.level = Math.max(bkt.level - (bkt.avg * deltaNs) / NS, 0);
  if (bkt.burstLength > 1) bkt.burstLevel = Math.max(bkt.burstLevel - (bkt.max * deltaNs) / NS, 0);
}

/** throttle_do_compute_wait: an int64 cast truncates. */
function waitFor(limit: number, extra: number): number {
  return Math.trunc((extra * NS) / limit);
}

/** throttle_compute_wait: nanoseconds until the bucket has room again. */
export function bucketWait(bkt: LeakyBucket): number {
  if (!bkt.avg) return 0;
  let bucketSize: number;
  let burstBucketSize: number;
  if (!bkt.max) {
    bucketSize = bkt.avg / 10;
    burstBucketSize = 0;
  } else {
    bucketSize = bkt.max * bkt.burstLength;
    burstBucketSize = bkt.max / 10;
  }
  let extra = bkt.level - bucketSize;
  if (extra > 0) return waitFor(bkt.avg, extra);
  if (bkt.burstLength > 1) {
    extra = bkt.burstLevel - burstBucketSize;
    if (extra > 0) return waitFor(bkt.max, extra);
  }
  return 0;
}

/** The buckets a read (0) or a write (1) is checked against, in QEMU's order. */
const TO_CHECK = [
  [BPS_TOTAL, OPS_TOTAL, BPS_READ, OPS_READ],
  [BPS_TOTAL, OPS_TOTAL, BPS_WRITE, OPS_WRITE],
] as const;
const SIZE_BUCKETS = [
  [BPS_TOTAL, BPS_READ],
  [BPS_TOTAL, BPS_WRITE],
] as const;
const UNIT_BUCKETS = [
  [OPS_TOTAL, OPS_READ],
  [OPS_TOTAL, OPS_WRITE],
] as const;

/** ThrottleState: a configuration with its levels and the time of the last leak. */
export class ThrottleState {
  cfg: ThrottleConfig = newThrottleConfig();
  previousLeak = 0;

  /** throttle_config: a new configuration, levels emptied, leaking from `now`. */
  configure(cfg: ThrottleConfig, now: number): void {
    this.cfg = copyConfig(cfg);
    for (const b of this.cfg.buckets) {
      b.level = 0;
      b.burstLevel = 0;
    }
    this.previousLeak = now;
  }

  /** throttle_compute_timer's leak and wait: 0 when the request may run now. */
  computeWait(now: number, isWrite: boolean): number {
    const delta = now - this.previousLeak;
    this.previousLeak = now;
    if (delta > 0) for (const b of this.cfg.buckets) leak(b, delta);
    let max = 0;
    for (const i of TO_CHECK[isWrite ? 1 : 0]) max = Math.max(max, bucketWait(this.cfg.buckets[i]!));
    return max;
  }

  /** throttle_account: a request of `bytes` runs. */
  account(isWrite: boolean, bytes: number): void {
    const w = isWrite ? 1 : 0;
    const units = this.cfg.opSize && bytes > this.cfg.opSize ? bytes / this.cfg.opSize : 1;
    for (let i = 0; i < 2; i++) {
      const s = this.cfg.buckets[SIZE_BUCKETS[w][i]]!;
      s.level += bytes;
      if (s.burstLength > 1) s.burstLevel += bytes;
      const u = this.cfg.buckets[UNIT_BUCKETS[w][i]]!;
      u.level += units;
      if (u.burstLength > 1) u.burstLevel += units;
    }
  }
}
