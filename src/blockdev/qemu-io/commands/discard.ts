import { type CommandContext, type CommandInfo, usage } from '../command.js';
import { getopt } from '../getopt.js';
import { reportLines } from '../report.js';
import { checkRange, failed, MAX_REQUEST, numberArg, timed } from '../request.js';

const HELP = `
 discards a range of bytes from the given offset

 Example:
 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file

 Discards a segment of the currently open file.
 -C, -- report statistics in a machine parsable format
 -q, -- quiet mode, do not show I/O statistics

`;

/**
 * `discard [-Cq] off len`. Without discard=unmap on the node QEMU's block
 * layer drops discards after checking them, and still reports success.
 */
export const discardCommand: CommandInfo = {
  name: 'discard',
  altname: 'd',
  argmin: 2,
  argmax: -1,
  args: '[-Cq] off len',
  oneline: 'discards a number of bytes at a specified offset',
  help: HELP,
  write: true,
  run,
};

async function run(ctx: CommandContext): Promise<boolean> {
  const o = getopt(ctx.argv, 'Cq');
  const machine = o.options.some((x) => x.opt === 'C');
  const quiet = o.options.some((x) => x.opt === 'q');
  if (o.error !== undefined) {
    ctx.out.err(o.error);
    return usage(ctx, discardCommand);
  }
  if (o.operands.length !== 2) return usage(ctx, discardCommand);
  const [offArg, lenArg] = o.operands as [string, string];
  const offset = numberArg(ctx, offArg);
  if (offset === undefined) return false;
  const bytes = numberArg(ctx, lenArg);
  if (bytes === undefined) return false;
  if (bytes > MAX_REQUEST) {
    ctx.out.out(`length cannot exceed ${MAX_REQUEST}, given ${lenArg}\n`);
    return false;
  }
  const range = checkRange(ctx.target, offset, bytes);
  if (!range) return failed(ctx, 'discard', 'EIO');
  const r = await timed(ctx, async () => {
    if (ctx.unmap) await ctx.target.discard(range.offset, range.bytes);
  });
  if (r.errno !== undefined) return failed(ctx, 'discard', r.errno);
  if (!quiet) ctx.out.out(reportLines('discard', r.elapsed, range.offset, range.bytes, range.bytes, 1, machine));
  return true;
}
