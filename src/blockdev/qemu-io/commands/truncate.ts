import { type CommandInfo, usage } from '../command.js';
import { getopt } from '../getopt.js';
import { cvtnum, cvtnumError } from '../numbers.js';
import type { Preallocation } from '../target.js';

const MODES: readonly Preallocation[] = ['off', 'metadata', 'falloc', 'full'];

/**
 * `truncate [-m prealloc_mode] off`: resizes the image (blk_truncate,
 * inexact). A failure is reported with the resize's own message.
 */
export const truncateCommand: CommandInfo = {
  name: 'truncate',
  altname: 't',
  argmin: 1,
  argmax: 3,
  args: '[-m prealloc_mode] off',
  oneline: 'truncates the current file at the given offset',
  write: true,
  run: async (ctx) => {
    const o = getopt(ctx.argv, 'm:');
    let preallocation: Preallocation = 'off';
    for (const { value } of o.options) {
      const mode = MODES.find((m) => m === value);
      if (mode === undefined) {
        ctx.out.report(`Invalid preallocation mode '${value}'`);
        return false;
      }
      preallocation = mode;
    }
    if (o.error !== undefined) {
      ctx.out.err(o.error);
      return usage(ctx, truncateCommand);
    }
    // qemu-io reads the word after the options without checking there is
    // one (and crashes); a usage line is the sane answer.
    const arg = o.operands[0];
    if (arg === undefined) return usage(ctx, truncateCommand);
    const r = cvtnum(arg);
    if (!r.ok) {
      // qemu-io names argv[1] in this message, whatever it parsed.
      ctx.out.out(cvtnumError(r.error, ctx.argv[1]!));
      return false;
    }
    if (r.warning !== undefined) ctx.out.warn(r.warning);
    if (!ctx.target.truncate) {
      ctx.out.report('Image format driver does not support resize');
      return false;
    }
    try {
      await ctx.target.truncate(Number(r.value), preallocation);
    } catch (err) {
      ctx.out.report((err as Error).message);
      return false;
    }
    return true;
  },
};
