import type { CommandInfo } from '../command.js';
import { cvtnum, cvtnumError } from '../numbers.js';

/**
 * The commands that act on the qemu-io process itself. They exist only in
 * the tool (QemuIoSession with a host): the monitor's "qemu-io" must not
 * close the daemon's node behind its back or kill the daemon.
 */

/** glibc's NSIG on Linux: sigraise refuses larger numbers. */
const NSIG = 65n;

/** `close` (alias c): outstanding requests complete, then the image is closed; later commands find no file open. */
export const closeCommand: CommandInfo = {
  name: 'close',
  altname: 'c',
  argmin: 0,
  argmax: 0,
  oneline: 'close the current open file',
  run: async (ctx) => {
    await ctx.host.close?.();
    return true;
  },
};

/** `sigraise SIGNAL`: the process raises the signal (output so far is already written). */
export const sigraiseCommand: CommandInfo = {
  name: 'sigraise',
  argmin: 1,
  argmax: 1,
  global: true,
  args: 'signal',
  oneline: 'raises a signal',
  help: `
 raises the given signal

 Example:
 'sigraise 15' - raises SIGTERM

 Invokes raise(signal), where "signal" is the mandatory integer argument
 given to sigraise.

`,
  run: async (ctx) => {
    const arg = ctx.argv[1]!;
    const r = cvtnum(arg);
    if (!r.ok) {
      ctx.out.out(cvtnumError(r.error, arg));
      return false;
    }
    if (r.value > NSIG) {
      ctx.out.out(`signal argument '${arg}' is too large to be a valid signal\n`);
      return false;
    }
    await ctx.host.raise?.(Number(r.value), 'sigraise');
    return true;
  },
};

/** `abort`: a simulated crash, which ends the process with SIGABRT. */
export const abortCommand: CommandInfo = {
  name: 'abort',
  argmin: 0,
  argmax: 0,
  global: true,
  oneline: 'simulate a program crash using abort(3)',
  run: async (ctx) => {
    await ctx.host.raise?.(6, 'abort');
    return true;
  },
};

/**
 * `quit` (alias `q`): the tool ends its command loop before the command
 * table sees it (src/cli/io.ts); the entry is here so that `help` lists it
 * and `help quit` answers, as qemu-io's quit_cmd does. The monitor's
 * qemu-io has no quit, as QEMU's has not.
 */
export const quitCommand: CommandInfo = {
  name: 'quit',
  altname: 'q',
  argmin: -1,
  argmax: -1,
  global: true,
  oneline: 'exit the program',
  run: async () => true,
};
