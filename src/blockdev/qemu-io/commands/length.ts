import type { CommandInfo } from '../command.js';
import { humanSize } from '../report.js';

/** `length`: the virtual size in qemu-io's units ("1 MiB"). */
export const lengthCommand: CommandInfo = {
  name: 'length',
  altname: 'l',
  argmin: 0,
  argmax: 0,
  oneline: 'gets the length of the current file',
  run: async (ctx) => {
    ctx.out.out(`${humanSize(ctx.target.size())}\n`);
    return true;
  },
};
