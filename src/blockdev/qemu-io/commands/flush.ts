import type { CommandContext, CommandInfo } from '../command.js';
import { errnoOf } from '../../../image/errno.js';

/** `flush`: qemu-io prints nothing, not even when the flush fails (the command just fails). */
export const flushCommand: CommandInfo = {
  name: 'flush',
  altname: 'f',
  argmin: 0,
  argmax: 0,
  oneline: 'flush all in-core file state to disk',
  run: async (ctx: CommandContext) => {
    try {
      await ctx.target.flush();
      return true;
    } catch (err) {
      errnoOf(err); // rethrows what is not an I/O failure
      return false;
    }
  },
};
