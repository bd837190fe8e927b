import { strerror } from '../../../image/errno.js';
import type { CommandContext, CommandInfo } from '../command.js';
import type { DebugControl } from '../target.js';

/**
 * qemu-io's blkdebug commands (break, remove_break, resume, wait_break):
 * they act on the first blkdebug node down the BlockBackend's chain
 * (bdrv_find_debug_node); without one each answers "Operation not
 * supported" (-ENOTSUP), printed with printf as qemu-io does.
 */

/** One control of the blkdebug node (ENOTSUP without one); a failure printed as `${what}: strerror`. */
function debugStep(ctx: CommandContext, step: (d: DebugControl) => string | undefined, what: string): boolean {
  const errno = ctx.target.debug ? step(ctx.target.debug) : 'ENOTSUP';
  if (errno === undefined) return true;
  ctx.out.out(`${what}: ${strerror(errno)}\n`);
  return false;
}

/** `break EVENT TAG`: the next request announcing EVENT is held, tagged TAG. */
export const breakCommand: CommandInfo = {
  name: 'break',
  argmin: 2,
  argmax: 2,
  args: 'event tag',
  oneline: 'sets a breakpoint on event and tags the stopped request as tag',
  run: async (ctx) => debugStep(ctx, (d) => d.breakpoint(ctx.argv[1]!, ctx.argv[2]!), 'Could not set breakpoint'),
};

/** `remove_break TAG`: the tag's breakpoints go and its held requests go on. */
export const removeBreakCommand: CommandInfo = {
  name: 'remove_break',
  argmin: 1,
  argmax: 1,
  args: 'tag',
  oneline: 'remove a breakpoint by tag',
  run: async (ctx) => debugStep(ctx, (d) => d.removeBreakpoint(ctx.argv[1]!), `Could not remove breakpoint ${ctx.argv[1]!}`),
};

/** `resume TAG`: the request held under TAG goes on. */
export const resumeCommand: CommandInfo = {
  name: 'resume',
  argmin: 1,
  argmax: 1,
  args: 'tag',
  oneline: 'resumes the request tagged as tag',
  run: async (ctx) => debugStep(ctx, (d) => d.resume(ctx.argv[1]!), 'Could not resume request'),
};

/**
 * `wait_break TAG`: waits until a request is held under TAG, requests in
 * flight going on meanwhile (qemu-io's aio_poll loop). Without a blkdebug
 * node QEMU would poll for ever; blockemu returns at once.
 */
export const waitBreakCommand: CommandInfo = {
  name: 'wait_break',
  argmin: 1,
  argmax: 1,
  args: 'tag',
  oneline: 'waits for the suspension of a request',
  run: async (ctx) => {
    await ctx.target.debug?.waitSuspended(ctx.argv[1]!);
    return true;
  },
};
