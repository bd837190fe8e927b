/**
 * I/O limits as QEMU's util/throttle.c configures them: six leaky buckets
 * (bytes and operations; total, read, write), each with an average rate,
 * an optional burst rate and a burst length in seconds, plus the size an
 * operation counts as. This module holds the configuration, its
 * validation in QEMU's words and the conversions to and from the
 * ThrottleLimits members (QAPI's names, which the QOM properties use).
 *
 * Values are kept as numbers: every valid one is at most
 * THROTTLE_VALUE_MAX (10^15 < 2^53), so they are exact; an out-of-range
 * input is refused before it is stored.
 */
import { BlockError } from '../../image/errors.js';

export const THROTTLE_VALUE_MAX = 1_000_000_000_000_000;
const UINT_MAX = 4294967295;

/** BucketType, in QEMU's order. */
export const BPS_TOTAL = 0;
export const BPS_READ = 1;
export const BPS_WRITE = 2;
export const OPS_TOTAL = 3;
export const OPS_READ = 4;
export const OPS_WRITE = 5;
export const BUCKETS_COUNT = 6;

/** The buckets by the legacy names QMP's BlockIOThrottle and query-block's BlockDeviceInfo give them. */
export const LEGACY_LIMIT_NAMES = [
  ['bps', BPS_TOTAL],
  ['bps_rd', BPS_READ],
  ['bps_wr', BPS_WRITE],
  ['iops', OPS_TOTAL],
  ['iops_rd', OPS_READ],
  ['iops_wr', OPS_WRITE],
] as const;

export interface LeakyBucket {
  /** Units per second; 0: no limit. */
  avg: number;
  /** Burst rate in units per second; 0: none. */
  max: number;
  /** Units performed and not yet leaked. */
  level: number;
  /** The same, leaking at the burst rate (kept only with bursts longer than a second). */
  burstLevel: number;
  /** Seconds a burst may last. */
  burstLength: number;
}

export interface ThrottleConfig {
  buckets: LeakyBucket[];
  /** Bytes an operation counts as for the ops buckets (0: every request is one). */
  opSize: number;
}

/** throttle_config_init: no limits, bursts of one second. */
export function newThrottleConfig(): ThrottleConfig {
  const buckets: LeakyBucket[] = [];
  for (let i = 0; i < BUCKETS_COUNT; i++) buckets.push({ avg: 0, max: 0, level: 0, burstLevel: 0, burstLength: 1 });
  return { buckets, opSize: 0 };
}

export function copyConfig(cfg: ThrottleConfig): ThrottleConfig {
  return { buckets: cfg.buckets.map((b) => ({ ...b })), opSize: cfg.opSize };
}

/** throttle_enabled: some average is set. */
export function throttleEnabled(cfg: ThrottleConfig): boolean {
  return cfg.buckets.some((b) => b.avg > 0);
}

const invalid = (message: string) => new BlockError('INVALID_ARGUMENT', message);

/** throttle_is_valid: throws QEMU's error for the first rule the configuration breaks. */
export function checkThrottleConfig(cfg: ThrottleConfig): void {
  const b = cfg.buckets;
  const both = (total: number, read: number, write: number, key: 'avg' | 'max') => b[total]![key] > 0 && (b[read]![key] > 0 || b[write]![key] > 0);
  if (both(BPS_TOTAL, BPS_READ, BPS_WRITE, 'avg') || both(OPS_TOTAL, OPS_READ, OPS_WRITE, 'avg') || both(BPS_TOTAL, BPS_READ, BPS_WRITE, 'max') || both(OPS_TOTAL, OPS_READ, OPS_WRITE, 'max')) {
    throw invalid('bps/iops/max total values and read/write values cannot be used at the same time');
  }
  if (cfg.opSize && !b[OPS_TOTAL]!.avg && !b[OPS_READ]!.avg && !b[OPS_WRITE]!.avg) throw invalid('iops size requires an iops value to be set');
  for (const bkt of b) {
    if (bkt.avg > THROTTLE_VALUE_MAX || bkt.max > THROTTLE_VALUE_MAX) throw invalid(`bps/iops/max values must be within [0, ${THROTTLE_VALUE_MAX}]`);
    if (!bkt.burstLength) throw invalid('the burst length cannot be 0');
    if (bkt.burstLength > 1 && !bkt.max) throw invalid('burst length set without burst rate');
    // QEMU divides in unsigned 64-bit integers.
    if (bkt.max && bkt.burstLength > Math.floor(THROTTLE_VALUE_MAX / bkt.max)) throw invalid('burst length too high for this burst rate');
    if (bkt.max && !bkt.avg) throw invalid('bps_max/iops_max require corresponding bps/iops values');
    if (bkt.max && bkt.max < bkt.avg) throw invalid('bps_max/iops_max cannot be lower than bps/iops');
  }
}

/** ThrottleLimits' members (QAPI names), each with its bucket and what it sets. */
export const LIMIT_MEMBERS = [
  ['iops-total', OPS_TOTAL, 'avg'],
  ['iops-total-max', OPS_TOTAL, 'max'],
  ['iops-total-max-length', OPS_TOTAL, 'burstLength'],
  ['iops-read', OPS_READ, 'avg'],
  ['iops-read-max', OPS_READ, 'max'],
  ['iops-read-max-length', OPS_READ, 'burstLength'],
  ['iops-write', OPS_WRITE, 'avg'],
  ['iops-write-max', OPS_WRITE, 'max'],
  ['iops-write-max-length', OPS_WRITE, 'burstLength'],
  ['bps-total', BPS_TOTAL, 'avg'],
  ['bps-total-max', BPS_TOTAL, 'max'],
  ['bps-total-max-length', BPS_TOTAL, 'burstLength'],
  ['bps-read', BPS_READ, 'avg'],
  ['bps-read-max', BPS_READ, 'max'],
  ['bps-read-max-length', BPS_READ, 'burstLength'],
  ['bps-write', BPS_WRITE, 'avg'],
  ['bps-write-max', BPS_WRITE, 'max'],
  ['bps-write-max-length', BPS_WRITE, 'burstLength'],
  ['iops-size', -1, 'opSize'],
] as const;

export type LimitName = (typeof LIMIT_MEMBERS)[number][0];
/** A ThrottleLimits value: the members given (int64s, exact when bigint). */
export type ThrottleLimits = Partial<Record<LimitName, number | bigint>>;

/** An int64 as QEMU stores it into a uint64_t field: negative values wrap. */
export function asUint64(v: number | bigint): number {
  const b = BigInt(v);
  return Number(b < 0n ? b + (1n << 64n) : b);
}

/**
 * throttle_limits_to_config: the members given replace the configuration's
 * values (a copy is returned), then the whole is checked. Burst lengths
 * are compared with UINT_MAX as signed values, as QEMU does.
 */
export function applyLimits(base: ThrottleConfig, limits: ThrottleLimits): ThrottleConfig {
  const cfg = copyConfig(base);
  // The averages and maxima first, then the burst lengths (each checked as it comes), then the op size: QEMU's order.
  for (const [name, bucket, field] of LIMIT_MEMBERS) {
    const v = limits[name];
    if (v === undefined || field === 'burstLength' || field === 'opSize') continue;
    cfg.buckets[bucket]![field] = asUint64(v);
  }
  for (const kind of ['bps', 'iops'] as const) {
    for (const dir of ['total', 'read', 'write'] as const) {
      const name = `${kind}-${dir}-max-length` as LimitName;
      const v = limits[name];
      if (v === undefined) continue;
      if (BigInt(v) > BigInt(UINT_MAX)) throw invalid(`${name} value must be in the range [0, ${UINT_MAX}]`);
      const bucket = LIMIT_MEMBERS.find((m) => m[0] === name)![1];
      cfg.buckets[bucket]!.burstLength = asUint64(v);
    }
  }
  if (limits['iops-size'] !== undefined) cfg.opSize = asUint64(limits['iops-size']);
  checkThrottleConfig(cfg);
  return cfg;
}

/** throttle_config_to_limits: every member, as qom-get shows them. */
export function limitsOf(cfg: ThrottleConfig): Record<LimitName, number> {
  const out = {} as Record<LimitName, number>;
  for (const [name, bucket, field] of LIMIT_MEMBERS) out[name] = field === 'opSize' ? cfg.opSize : cfg.buckets[bucket]![field];
  return out;
}
