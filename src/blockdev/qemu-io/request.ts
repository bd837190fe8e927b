import { type CommandContext } from './command.js';
import { errnoOf, strerror } from '../../image/errno.js';
import { cvtnum, cvtnumError } from './numbers.js';
import { type Elapsed, elapsedBetween } from './report.js';
import type { QemuIoTarget } from './target.js';

/** QEMU's BDRV_REQUEST_MAX_BYTES: the largest single request qemu-io accepts. */
export const MAX_REQUEST = 2147483136n;

/**
 * Large requests are issued in pieces of this size so memory stays bounded
 * (a 2 GiB `write -P` needs one pattern-filled piece at a time). Large
 * enough that what tests issue is one request, as qemu-io issues it: a
 * driver that reports per request (quorum's events name the range) sees
 * the same ranges. A multiple of 16 so `read -v` dumps line up across pieces.
 */
export const PIECE = 128 << 20;

/** Parses a size/offset argument as qemu-io's cvtnum, printing what qemu-io prints when it cannot. */
export function numberArg(ctx: CommandContext, text: string): bigint | undefined {
  const r = cvtnum(text);
  if (!r.ok) {
    ctx.out.out(cvtnumError(r.error, text));
    return undefined;
  }
  if (r.warning !== undefined) ctx.out.warn(r.warning);
  return r.value;
}

/**
 * The block layer's request check (blk_check_byte_request): a request must
 * lie within the device, else EIO, and that is decided before the image is
 * asked. On success the numbers are safe integers (they are below the size).
 */
export function checkRange(target: QemuIoTarget, offset: bigint, bytes: bigint): { offset: number; bytes: number } | undefined {
  const size = BigInt(target.size());
  if (offset > size || size - offset < bytes) return undefined;
  return { offset: Number(offset), bytes: Number(bytes) };
}

/** "<op> failed: <strerror>" as qemu-io prints a failed request (stdout). */
export function failed(ctx: CommandContext, op: string, errno: string): false {
  ctx.out.out(`${op} failed: ${strerror(errno)}\n`);
  return false;
}

/** Runs a request, timing it; a failure comes back as its errno. */
export async function timed(ctx: CommandContext, body: () => Promise<void>): Promise<{ errno?: string; elapsed: Elapsed }> {
  const t1 = ctx.now();
  try {
    await body();
  } catch (err) {
    return { errno: errnoOf(err), elapsed: elapsedBetween(t1, ctx.now()) };
  }
  return { elapsed: elapsedBetween(t1, ctx.now()) };
}

/** Calls fn for each piece [off, off+len) of [offset, offset+bytes), in order. */
export async function inPieces(offset: number, bytes: number, fn: (off: number, len: number) => Promise<void>): Promise<void> {
  for (let done = 0; done < bytes; done += PIECE) await fn(offset + done, Math.min(PIECE, bytes - done));
}
