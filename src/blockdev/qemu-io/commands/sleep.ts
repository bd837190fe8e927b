import type { CommandInfo } from '../command.js';
import { strtolWhole } from '../numbers.js';

/**
 * `sleep MS`: waits, letting outstanding aio requests complete meanwhile
 * (qemu-io runs its main loop while it waits). The number is strtol's, base 0.
 */
export const sleepCommand: CommandInfo = {
  name: 'sleep',
  argmin: 1,
  argmax: 1,
  global: true,
  oneline: 'waits for the given value in milliseconds',
  run: async (ctx) => {
    const arg = ctx.argv[1]!;
    const ms = strtolWhole(arg);
    if (ms === undefined || ms < 0n) {
      ctx.out.out(`${arg} is not a valid number\n`);
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, Number(ms)));
    return true;
  },
};
