import { type CommandContext, type CommandInfo, usage } from '../command.js';
import { cvtnum, cvtnumError } from '../numbers.js';
import { hexDump } from '../report.js';
import { inPieces, MAX_REQUEST, numberArg, PIECE } from '../request.js';
import type { QemuIoTarget } from '../target.js';

/**
 * The length operands of the vectored commands (readv, writev, aio_*):
 * qemu-io's create_iovec parses each as a size and makes one request of
 * their sum (the split into buffers is invisible in what is read or
 * written). Resolves to the total, or undefined after printing why not.
 */
export function vectorLength(ctx: CommandContext, args: readonly string[]): bigint | undefined {
  let total = 0n;
  for (const arg of args) {
    const r = cvtnum(arg);
    if (!r.ok) {
      ctx.out.out(cvtnumError(r.error, arg));
      return undefined;
    }
    if (r.warning !== undefined) ctx.out.warn(r.warning);
    if (r.value > MAX_REQUEST) {
      ctx.out.out(`Argument '${arg}' exceeds maximum size ${MAX_REQUEST}\n`);
      return undefined;
    }
    if (total > MAX_REQUEST - r.value) {
      ctx.out.out(`The total number of bytes exceed the maximum size ${MAX_REQUEST}\n`);
      return undefined;
    }
    total += r.value;
  }
  return total;
}

/**
 * The vectored commands' checks after their option loop: a getopt error
 * or fewer than OFFSET LEN operands print the usage (the command's result,
 * returned); undefined lets the command go on.
 */
export function badVectorCall(ctx: CommandContext, o: { error?: string; operands: readonly string[] }, cmd: CommandInfo): boolean | undefined {
  if (o.error !== undefined) {
    ctx.out.err(o.error);
    return usage(ctx, cmd);
  }
  if (o.operands.length < 2) return usage(ctx, cmd);
  return undefined;
}

/** OFFSET LEN [LEN…]: the offset and the summed length, or undefined after printing why not. */
export function vectorRange(ctx: CommandContext, operands: readonly string[]): { offset: bigint; count: bigint } | undefined {
  const offset = numberArg(ctx, operands[0]!);
  if (offset === undefined) return undefined;
  const count = vectorLength(ctx, operands.slice(1));
  return count === undefined ? undefined : { offset, count };
}

/** What a whole-range read found: whether every byte was `pattern`, and the -v dump. */
export interface ReadOutcome {
  mismatch: boolean;
  dump: string;
}

/** Reads [offset, offset+bytes) piece by piece, checking `pattern` over all of it and keeping a dump when asked. */
export async function readChecked(target: QemuIoTarget, offset: number, bytes: number, pattern: number | undefined, dump: boolean): Promise<ReadOutcome> {
  let mismatch = false;
  const dumps: string[] = [];
  await inPieces(offset, bytes, async (off, len) => {
    const data = await target.read(off, len);
    if (pattern !== undefined && !mismatch) mismatch = data.some((b) => b !== pattern);
    if (dump) dumps.push(hexDump(data, off));
  });
  return { mismatch, dump: dumps.join('') };
}

/** Writes `fill` over [offset, offset+bytes), piece by piece. */
export async function writeFilled(target: QemuIoTarget, offset: number, bytes: number, fill: number, fua: boolean): Promise<void> {
  const piece = new Uint8Array(Math.min(bytes, PIECE)).fill(fill);
  await inPieces(offset, bytes, (off, len) => target.write(off, piece.subarray(0, len), { fua }));
}
