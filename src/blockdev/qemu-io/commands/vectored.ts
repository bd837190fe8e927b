import type { CommandContext, CommandInfo } from '../command.js';
import { getopt } from '../getopt.js';
import { parsePattern } from '../numbers.js';
import { reportLines } from '../report.js';
import { checkRange, failed, timed } from '../request.js';
import { badVectorCall, readChecked, vectorRange, writeFilled } from './iovec.js';

const READV_HELP = `
 reads a range of bytes from the given offset into multiple buffers

 Example:
 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 Uses multiple iovec buffers if more than one byte range is specified.
 -C, -- report statistics in a machine parsable format
 -P, -- use a pattern to verify read data
 -v, -- dump buffer to standard output
 -q, -- quiet mode, do not show I/O statistics

`;

const WRITEV_HELP = `
 writes a range of bytes from the given offset source from multiple buffers

 Example:
 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -P, -- use different pattern to fill file
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -q, -- quiet mode, do not show I/O statistics

`;

/** `readv [-Cqv] [-P pattern] off len [len..]`: one read of the lengths' sum; -P checks all of it. */
export const readvCommand: CommandInfo = {
  name: 'readv',
  argmin: 2,
  argmax: -1,
  args: '[-Cqv] [-P pattern] off len [len..]',
  oneline: 'reads a number of bytes at a specified offset',
  help: READV_HELP,
  run: runReadv,
};

/** `writev [-Cfq] [-P pattern] off len [len..]`: one write of the lengths' sum. */
export const writevCommand: CommandInfo = {
  name: 'writev',
  argmin: 2,
  argmax: -1,
  args: '[-Cfq] [-P pattern] off len [len..]',
  oneline: 'writes a number of bytes at a specified offset',
  help: WRITEV_HELP,
  write: true,
  run: runWritev,
};

/** Parses a -P value, printing qemu-io's complaint when it is no byte. */
export function patternArg(ctx: CommandContext, value: string): number | undefined {
  const p = parsePattern(value);
  if (p === undefined) ctx.out.out(`${value} is not a valid pattern byte\n`);
  return p;
}

async function runReadv(ctx: CommandContext): Promise<boolean> {
  const o = getopt(ctx.argv, 'CP:qv');
  let machine = false;
  let quiet = false;
  let dump = false;
  let pattern: number | undefined;
  for (const { opt, value } of o.options) {
    if (opt === 'C') machine = true;
    else if (opt === 'q') quiet = true;
    else if (opt === 'v') dump = true;
    else if (opt === 'P') {
      pattern = patternArg(ctx, value);
      if (pattern === undefined) return false;
    }
  }
  const bad = badVectorCall(ctx, o, readvCommand);
  if (bad !== undefined) return bad;
  const req = vectorRange(ctx, o.operands);
  if (!req) return false;
  const { offset, count } = req;

  const range = checkRange(ctx.target, offset, count);
  if (!range) return failed(ctx, 'readv', 'EIO');
  let outcome = { mismatch: false, dump: '' };
  const r = await timed(ctx, async () => {
    outcome = await readChecked(ctx.target, range.offset, range.bytes, pattern, dump);
  });
  if (r.errno !== undefined) return failed(ctx, 'readv', r.errno);
  if (outcome.mismatch) ctx.out.out(`Pattern verification failed at offset ${range.offset}, ${range.bytes} bytes\n`);
  if (quiet) return !outcome.mismatch;
  if (dump) ctx.out.out(outcome.dump);
  ctx.out.out(reportLines('read', r.elapsed, range.offset, range.bytes, range.bytes, 1, machine));
  return !outcome.mismatch;
}

async function runWritev(ctx: CommandContext): Promise<boolean> {
  const o = getopt(ctx.argv, 'CfqP:');
  let machine = false;
  let quiet = false;
  let fua = false;
  let pattern = 0xcd;
  for (const { opt, value } of o.options) {
    if (opt === 'C') machine = true;
    else if (opt === 'q') quiet = true;
    else if (opt === 'f') fua = true;
    else if (opt === 'P') {
      const p = patternArg(ctx, value);
      if (p === undefined) return false;
      pattern = p;
    }
  }
  const bad = badVectorCall(ctx, o, writevCommand);
  if (bad !== undefined) return bad;
  const req = vectorRange(ctx, o.operands);
  if (!req) return false;
  const { offset, count } = req;

  const range = checkRange(ctx.target, offset, count);
  if (!range) return failed(ctx, 'writev', 'EIO');
  const r = await timed(ctx, () => writeFilled(ctx.target, range.offset, range.bytes, pattern, fua));
  if (r.errno !== undefined) return failed(ctx, 'writev', r.errno);
  if (!quiet) ctx.out.out(reportLines('wrote', r.elapsed, range.offset, range.bytes, range.bytes, 1, machine));
  return true;
}
