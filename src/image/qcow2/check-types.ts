/**
 * Results of a qcow2 consistency check, in the terms qemu-img check reports
 * (BdrvCheckResult / ImageCheck). Nothing here prints: the CLI decides where
 * each message goes.
 */

/** What the caller allows the check to repair (qemu-img check -r). */
export type RepairMode = 'leaks' | 'all';

/** Repair flags as QEMU's BdrvCheckMode: leaks and errors can be fixed separately. */
export interface FixFlags {
  leaks: boolean;
  errors: boolean;
}

export const NO_FIX: FixFlags = { leaks: false, errors: false };

export function fixFlags(mode: RepairMode | undefined): FixFlags {
  return { leaks: mode !== undefined, errors: mode === 'all' };
}

/**
 * One line the check writes to stderr. `reported` lines are ones QEMU emits
 * through error_report(), which the CLI prefixes with the program name; the
 * others are plain fprintf(stderr) lines. `noNewline` marks the one message
 * QEMU prints without a line end (error_printf of the bitmap warning).
 */
export interface CheckMessage {
  text: string;
  reported?: boolean;
  noNewline?: boolean;
}

/** The counters of one check pass (QEMU's BdrvCheckResult and BlockFragInfo). */
export interface CheckCounts {
  checkErrors: number;
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
}

export function emptyCounts(): CheckCounts {
  return {
    checkErrors: 0,
    corruptions: 0,
    leaks: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    totalClusters: 0,
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
  };
}

/** A check that could not complete: QEMU's negative return code. */
export interface CheckFailure {
  errno: string;
  /** strerror() text, e.g. "Input/output error". */
  text: string;
}

/** One run of the check over the image. */
export interface CheckPass extends CheckCounts {
  messages: CheckMessage[];
  /** Set when the pass stopped early (qemu-img then says "Check failed: <text>"). */
  failure?: CheckFailure;
}

/**
 * The outcome of `checkQcow2`: what qemu-img check reports. When the first
 * pass repaired something, qemu-img checks the image a second time; the
 * final counters are the second pass's, with the fixed counts of the first.
 */
export interface CheckResult extends CheckCounts {
  format: 'qcow2';
  /** Messages of every pass, in the order QEMU prints them (stderr). */
  messages: CheckMessage[];
  /** The first pass repaired something and the image was checked again. */
  repaired: boolean;
  /** Messages of the first pass only (the CLI prints the "repaired" notice between passes). */
  firstPassMessages: CheckMessage[];
  failure?: CheckFailure;
}

const STRERROR: Record<string, string> = {
  EIO: 'Input/output error',
  EINVAL: 'Invalid argument',
  EFBIG: 'File too large',
  ENOMEM: 'Cannot allocate memory',
  ENOSPC: 'No space left on device',
  ENOMEDIUM: 'No medium found',
  ENOTSUP: 'Operation not supported',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EROFS: 'Read-only file system',
  EDQUOT: 'Disk quota exceeded',
};

export function strerror(errno: string): string {
  return STRERROR[errno] ?? errno;
}

export function failure(errno: string): CheckFailure {
  return { errno, text: strerror(errno) };
}

/** printf("%" PRIx64): lowercase hex, no prefix. */
export function hex(v: number | bigint): string {
  return v.toString(16);
}

/** printf("%#" PRIx64): "0x" prefix, except for zero, which prints as "0". */
export function altHex(v: number | bigint): string {
  return v === 0 || v === 0n ? '0' : `0x${v.toString(16)}`;
}
