/**
 * -drive's I/O limits as blockdev.c reads them: drive_new first renames the
 * legacy keys (bps, iops_rd, group, readonly…) to their QMP names, then
 * blockdev_init's common options take every `throttling.*` number, build a
 * ThrottleConfig and check it (throttle_is_valid) before the image opens.
 * The drive's BlockBackend joins its group once it exists
 * (src/qmp/commands/drive.ts).
 */
import { BPS_READ, BPS_TOTAL, BPS_WRITE, checkThrottleConfig, newThrottleConfig, OPS_READ, OPS_TOTAL, OPS_WRITE, type ThrottleConfig, throttleEnabled } from '../blockdev/throttle/config.js';

/** drive_new's opt_renames, in its order: legacy name, QMP name. */
const RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['iops', 'throttling.iops-total'],
  ['iops_rd', 'throttling.iops-read'],
  ['iops_wr', 'throttling.iops-write'],
  ['bps', 'throttling.bps-total'],
  ['bps_rd', 'throttling.bps-read'],
  ['bps_wr', 'throttling.bps-write'],
  ['iops_max', 'throttling.iops-total-max'],
  ['iops_rd_max', 'throttling.iops-read-max'],
  ['iops_wr_max', 'throttling.iops-write-max'],
  ['bps_max', 'throttling.bps-total-max'],
  ['bps_rd_max', 'throttling.bps-read-max'],
  ['bps_wr_max', 'throttling.bps-write-max'],
  ['iops_size', 'throttling.iops-size'],
  ['group', 'throttling.group'],
  ['readonly', 'read-only'],
];

/** qemu_opt_rename for each legacy key: both names given is an error. */
export function renameLegacyDriveOptions(o: Map<string, string>): void {
  for (const [from, to] of RENAMES) {
    const v = o.get(from);
    if (v === undefined) continue;
    if (o.has(to)) throw new Error(`'${to}' and its alias '${from}' can't be used at the same time`);
    o.delete(from);
    o.set(to, v);
  }
}

/** The bucket and field each `throttling.` number sets, with its default (extract_common_blockdev_options). */
const NUMBERS: ReadonlyArray<readonly [string, number, 'avg' | 'max' | 'burstLength']> = [
  ['bps-total', BPS_TOTAL, 'avg'],
  ['bps-read', BPS_READ, 'avg'],
  ['bps-write', BPS_WRITE, 'avg'],
  ['iops-total', OPS_TOTAL, 'avg'],
  ['iops-read', OPS_READ, 'avg'],
  ['iops-write', OPS_WRITE, 'avg'],
  ['bps-total-max', BPS_TOTAL, 'max'],
  ['bps-read-max', BPS_READ, 'max'],
  ['bps-write-max', BPS_WRITE, 'max'],
  ['iops-total-max', OPS_TOTAL, 'max'],
  ['iops-read-max', OPS_READ, 'max'],
  ['iops-write-max', OPS_WRITE, 'max'],
  ['bps-total-max-length', BPS_TOTAL, 'burstLength'],
  ['bps-read-max-length', BPS_READ, 'burstLength'],
  ['bps-write-max-length', BPS_WRITE, 'burstLength'],
  ['iops-total-max-length', OPS_TOTAL, 'burstLength'],
  ['iops-read-max-length', OPS_READ, 'burstLength'],
  ['iops-write-max-length', OPS_WRITE, 'burstLength'],
];

/**
 * A QEMU_OPT_NUMBER (parse_option_number, qemu_strtou64 in base 0): decimal,
 * 0x hex or 0 octal; a minus sign wraps modulo 2^64 as strtoull does.
 */
function optNumber(key: string, v: string): number {
  const m = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(v);
  if (!m) throw new Error(`Parameter '${key}' expects a number`);
  const digits = m[2]!;
  let n = /^0[xX]/.test(digits) ? BigInt(digits) : digits.length > 1 && digits.startsWith('0') ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  if (n > (1n << 64n) - 1n) throw new Error(`Value '${v}' is too large for parameter '${key}'`);
  if (m[1] === '-' && n !== 0n) n = (1n << 64n) - n;
  return Number(n);
}

/** What a -drive asked for: the limits (validated) and the group; undefined when it enables none. */
export interface DriveThrottle {
  cfg: ThrottleConfig;
  group: string | undefined;
}

/** The `throttling.*` options taken out of `o`, their numbers parsed (the QemuOpts absorb, which fails first). */
export function takeThrottleOptions(o: Map<string, string>): Map<string, string> {
  const taken = new Map<string, string>();
  const known = new Set([...NUMBERS.map((n) => n[0]), 'iops-size', 'group']);
  for (const [k, v] of [...o]) {
    if (!k.startsWith('throttling.') || !known.has(k.slice('throttling.'.length))) continue;
    o.delete(k);
    if (k !== 'throttling.group') optNumber(k, v);
    taken.set(k.slice('throttling.'.length), v);
  }
  return taken;
}

/** extract_common_blockdev_options' throttling part: the configuration, checked; undefined when no limit is set. */
export function driveThrottle(taken: Map<string, string>): DriveThrottle | undefined {
  const cfg = newThrottleConfig();
  for (const [name, bucket, field] of NUMBERS) {
    const v = taken.get(name);
    if (v !== undefined) cfg.buckets[bucket]![field] = optNumber(`throttling.${name}`, v);
  }
  const size = taken.get('iops-size');
  if (size !== undefined) cfg.opSize = optNumber('throttling.iops-size', size);
  checkThrottleConfig(cfg);
  return throttleEnabled(cfg) ? { cfg, group: taken.get('group') } : undefined;
}
