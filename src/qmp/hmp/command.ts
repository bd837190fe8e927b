import type { QmpContext } from '../context.js';
import { toQmpError } from '../error.js';
import type { HmpArgs } from './args.js';

/** What an HMP command runs with: the daemon's services (as a QMP command has them) and the monitor's output. */
export interface HmpContext {
  readonly qmp: QmpContext;
  /** Monitor output; "\n" ends a line (the monitor writes it as "\r\n"). */
  out(text: string): void;
  /** Stops the monitor reading (QEMU's monitor_suspend, which `quit` does): no prompt follows. */
  suspend?(): void;
}

/**
 * One HMP command, as a row of hmp-commands.hx: its name (aliases after a
 * `|`), its args_type (parsed by args.ts), the parameters and help text
 * `help` shows, and what it does — or, for `info`, its table of
 * subcommands.
 */
export interface HmpCommand {
  readonly name: string;
  readonly args: string;
  readonly params: string;
  readonly help: string;
  readonly run?: (ctx: HmpContext, args: HmpArgs) => void | Promise<void>;
  readonly sub?: readonly HmpCommand[];
}

/** A failure that hmp_handle_error reports: "Error: " and the message. */
export class HmpCommandError extends Error {}

/** A failure a command reports with error_report itself: the message alone. */
export class HmpReportError extends Error {}

/**
 * Runs a QMP command from an HMP one, as QEMU's hmp_* functions call
 * qmp_*: the same schema validation and handler; a failure becomes an
 * HmpCommandError with the QMP error's text.
 */
export async function callQmp(ctx: HmpContext, name: string, args: Record<string, unknown> = {}): Promise<unknown> {
  const entry = ctx.qmp.commands.get(name);
  if (!entry) throw new HmpCommandError(`The command ${name} has not been found`);
  try {
    return await entry.handler(entry.def.args.visit(args, []), ctx.qmp);
  } catch (err) {
    throw new HmpCommandError(toQmpError(err).desc, { cause: err });
  }
}

/** A command that only calls a QMP command with its HMP arguments (renamed by `map`). */
export function viaQmp(qmpName: string, map: (a: HmpArgs) => Record<string, unknown>): HmpCommand['run'] {
  return async (ctx, a) => {
    await callQmp(ctx, qmpName, map(a));
  };
}
