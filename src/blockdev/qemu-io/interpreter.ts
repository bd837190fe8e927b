import { AioQueue } from './aio-queue.js';
import { aioFlushCommand, aioReadCommand, aioWriteCommand } from './commands/aio.js';
import { readvCommand, writevCommand } from './commands/vectored.js';
import { abortCommand, closeCommand, quitCommand, sigraiseCommand } from './commands/process.js';
import { sleepCommand } from './commands/sleep.js';
import { openCommand } from './commands/open.js';
import { truncateCommand } from './commands/truncate.js';
import { reopenCommand } from './commands/reopen.js';
import { infoCommand } from './commands/info.js';
import { breakCommand, removeBreakCommand, resumeCommand, waitBreakCommand } from './commands/breakpoints.js';
import { type CommandContext, type CommandInfo, type InterpreterOptions, type IoHost, type OpenRequest, Output, type OutputChunk } from './command.js';
import { allocCommand, mapCommand } from './commands/map.js';
import { discardCommand } from './commands/discard.js';
import { flushCommand } from './commands/flush.js';
import { findCommand, helpCommand } from './commands/help.js';
import { lengthCommand } from './commands/length.js';
import { readCommand } from './commands/read.js';
import { writeCommand } from './commands/write.js';
import type { QemuIoTarget } from './target.js';

/** The commands, sorted by name as qemu-io keeps its table (help lists them in this order). */
export const COMMANDS: readonly CommandInfo[] = [
  aioFlushCommand,
  aioReadCommand,
  aioWriteCommand,
  breakCommand,
  removeBreakCommand,
  resumeCommand,
  waitBreakCommand,
  readvCommand,
  reopenCommand,
  writevCommand,
  sleepCommand,
  truncateCommand,
  allocCommand,
  discardCommand,
  flushCommand,
  helpCommand,
  infoCommand,
  lengthCommand,
  mapCommand,
  readCommand,
  writeCommand,
].sort(byName);

/** The tool's table: the commands above and those acting on the process (close, sigraise, abort). */
const TOOL_COMMANDS: readonly CommandInfo[] = [...COMMANDS, abortCommand, closeCommand, openCommand, quitCommand, sigraiseCommand].sort(byName);

function byName(a: CommandInfo, b: CommandInfo): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export interface QemuIoResult {
  /** The command failed: qemu-io would exit 1 at the end of its command list. */
  failed: boolean;
  /** Everything printed, in order. */
  chunks: OutputChunk[];
  /** What went to stdout / stderr, and both interleaved (what a monitor shows). */
  readonly stdout: string;
  readonly stderr: string;
  readonly text: string;
}

function result(failed: boolean, chunks: OutputChunk[]): QemuIoResult {
  const join = (pick?: OutputChunk['stream']) => chunks.filter((c) => pick === undefined || c.stream === pick).map((c) => c.text).join('');
  return {
    failed,
    chunks,
    get stdout() {
      return join('stdout');
    },
    get stderr() {
      return join('stderr');
    },
    get text() {
      return join();
    },
  };
}

/**
 * Runs one qemu-io command line against `target` (undefined: no image open,
 * where only global commands such as help work) and returns what qemu-io
 * 7.2 would print, without printing it. Words are split on spaces only, as
 * qemu-io does (no quoting). Nothing here touches the process: callers
 * decide where the output goes and what a failure means.
 */
export async function runQemuIoCommand(line: string, target: QemuIoTarget | undefined, options: InterpreterOptions = {}): Promise<QemuIoResult> {
  const out = new Output(options.errorPrefix ?? '');
  // One command on its own (the monitor's "qemu-io"): asynchronous requests
  // complete before it returns, so their reports are part of its output —
  // except those held at a blkdebug breakpoint, which stay in flight until a
  // later command resumes them and report to `late` when they complete.
  let returned = false;
  const aio = new AioQueue(options.errorPrefix ?? '', (chunks) => (returned ? options.late?.(chunks) : out.chunks.push(...chunks)));
  const ok = await runLine(line, { target, out, options, aio, host: {}, commands: COMMANDS });
  const held = target?.debug?.whenHeld();
  await (held ? Promise.race([aio.drain(), held.promise]) : aio.drain());
  held?.cancel();
  returned = true;
  return result(!ok, out.chunks);
}

/** The tool's answers to close, sigraise and abort. */
export interface SessionHost {
  /** Closes the image for good (the session forgets it). */
  closeImage(): Promise<void>;
  /** Raises a signal in the process (IoHost.raise: whether stdio is flushed first depends on `how`). */
  raise(signal: number, how: 'sigraise' | 'abort'): Promise<void>;
  /** Opens an image (`open`); prints why not to `out` and resolves to undefined when it cannot. */
  openImage(req: OpenRequest, out: Output): Promise<QemuIoTarget | undefined>;
}

/**
 * A qemu-io session (the tool's command list or prompt): asynchronous
 * requests outlive the command that issued them, and their reports go to
 * `onCompletion` when they complete, interleaved with later commands'
 * output as qemu-io's main loop interleaves them.
 */
export class QemuIoSession {
  private readonly aio: AioQueue;
  private readonly host: IoHost;
  private readonly commands: readonly CommandInfo[];
  constructor(
    private target: QemuIoTarget | undefined,
    private readonly options: InterpreterOptions,
    onCompletion: (chunks: OutputChunk[]) => void,
    tool?: SessionHost,
  ) {
    this.aio = new AioQueue(options.errorPrefix ?? '', onCompletion);
    this.host = tool
      ? {
          close: async () => {
            await this.aio.drain();
            this.target = undefined;
            await tool.closeImage();
          },
          raise: (signal, how) => tool.raise(signal, how),
          open: async (req, out) => {
            if (this.target !== undefined) {
              out.report("file open already, try 'help close'");
              return false;
            }
            this.target = await tool.openImage(req, out);
            return this.target !== undefined;
          },
        }
      : {};
    this.commands = tool ? TOOL_COMMANDS : COMMANDS;
  }

  /** Whether an image is still open (close drops it). */
  get open(): boolean {
    return this.target !== undefined;
  }

  /**
   * Runs one command line; its own output is returned, not sent to
   * onCompletion. A command that raises a signal gets its output written
   * first through `beforeRaise` — the caller's printer.
   */
  async run(line: string, beforeRaise?: (chunks: OutputChunk[]) => void): Promise<QemuIoResult> {
    const out = new Output(this.options.errorPrefix ?? '');
    const host: IoHost = {
      ...this.host,
      raise: async (signal, how) => {
        beforeRaise?.(out.chunks.splice(0));
        await this.host.raise?.(signal, how);
      },
    };
    const ok = await runLine(line, { target: this.target, out, options: this.options, aio: this.aio, host, commands: this.commands });
    return result(!ok, out.chunks);
  }

  /** Waits for every outstanding request (qemu-io drains them before closing the image). */
  drain(): Promise<void> {
    return this.aio.drain();
  }
}

interface LineContext {
  target: QemuIoTarget | undefined;
  out: Output;
  options: InterpreterOptions;
  aio: AioQueue;
  host: IoHost;
  commands: readonly CommandInfo[];
}

async function runLine(line: string, c: LineContext): Promise<boolean> {
  const argv = line.split(' ').filter((w) => w !== '');
  if (argv.length === 0) return true;
  return dispatch(argv, c);
}

async function dispatch(argv: string[], { target, out, options, aio, host, commands }: LineContext): Promise<boolean> {
  const name = argv[0]!;
  const ci = findCommand(commands, name);
  if (!ci) {
    out.err(`command "${name}" not found\n`);
    return false;
  }
  if (!ci.global && !target) {
    out.err("no file open, try 'help open'\n");
    return false;
  }
  const argc = argv.length - 1;
  if (argc < ci.argmin || (ci.argmax !== -1 && argc > ci.argmax)) {
    out.err(argumentCountError(ci, name, argc));
    return false;
  }
  if (ci.write && target?.acquireWrite) {
    const refused = await target.acquireWrite();
    if (refused !== undefined) {
      out.report(refused);
      return false;
    }
  } else if (ci.write && target?.readOnly) {
    out.report('Block node is read-only');
    return false;
  }
  const ctx: CommandContext = {
    argv,
    target: target!,
    out,
    unmap: options.unmap ?? true,
    now: options.now ?? (() => process.hrtime.bigint()),
    commands,
    aio,
    host,
  };
  return ci.run(ctx);
}

function argumentCountError(ci: CommandInfo, name: string, argc: number): string {
  if (ci.argmax === -1) return `bad argument count ${argc} to ${name}, expected at least ${ci.argmin} arguments\n`;
  if (ci.argmin === ci.argmax) return `bad argument count ${argc} to ${name}, expected ${ci.argmin} arguments\n`;
  return `bad argument count ${argc} to ${name}, expected between ${ci.argmin} and ${ci.argmax} arguments\n`;
}
