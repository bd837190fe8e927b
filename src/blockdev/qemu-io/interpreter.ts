import { AioQueue } from './aio-queue.js';
import { aioFlushCommand, aioReadCommand, aioWriteCommand } from './commands/aio.js';
import { readvCommand, writevCommand } from './commands/vectored.js';
import { sleepCommand } from './commands/sleep.js';
import { truncateCommand } from './commands/truncate.js';
import { type CommandContext, type CommandInfo, type InterpreterOptions, Output, type OutputChunk } from './command.js';
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
  readvCommand,
  writevCommand,
  sleepCommand,
  truncateCommand,
  allocCommand,
  discardCommand,
  flushCommand,
  helpCommand,
  lengthCommand,
  mapCommand,
  readCommand,
  writeCommand,
].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

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
  // complete before it returns, so their reports are part of its output.
  const aio = new AioQueue(options.errorPrefix ?? '', (chunks) => out.chunks.push(...chunks));
  const ok = await runLine(line, target, out, options, aio);
  await aio.drain();
  return result(!ok, out.chunks);
}

/**
 * A qemu-io session (the tool's command list or prompt): asynchronous
 * requests outlive the command that issued them, and their reports go to
 * `onCompletion` when they complete, interleaved with later commands'
 * output as qemu-io's main loop interleaves them.
 */
export class QemuIoSession {
  private readonly aio: AioQueue;
  constructor(
    private readonly target: QemuIoTarget | undefined,
    private readonly options: InterpreterOptions,
    onCompletion: (chunks: OutputChunk[]) => void,
  ) {
    this.aio = new AioQueue(options.errorPrefix ?? '', onCompletion);
  }

  /** Runs one command line; its own output is returned, not sent to onCompletion. */
  async run(line: string): Promise<QemuIoResult> {
    const out = new Output(this.options.errorPrefix ?? '');
    const ok = await runLine(line, this.target, out, this.options, this.aio);
    return result(!ok, out.chunks);
  }

  /** Waits for every outstanding request (qemu-io drains them before closing the image). */
  drain(): Promise<void> {
    return this.aio.drain();
  }
}

async function runLine(line: string, target: QemuIoTarget | undefined, out: Output, options: InterpreterOptions, aio: AioQueue): Promise<boolean> {
  const argv = line.split(' ').filter((w) => w !== '');
  if (argv.length === 0) return true;
  return dispatch(argv, target, out, options, aio);
}

async function dispatch(argv: string[], target: QemuIoTarget | undefined, out: Output, options: InterpreterOptions, aio: AioQueue): Promise<boolean> {
  const name = argv[0]!;
  const ci = findCommand(COMMANDS, name);
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
    commands: COMMANDS,
    aio,
  };
  return ci.run(ctx);
}

function argumentCountError(ci: CommandInfo, name: string, argc: number): string {
  if (ci.argmax === -1) return `bad argument count ${argc} to ${name}, expected at least ${ci.argmin} arguments\n`;
  if (ci.argmin === ci.argmax) return `bad argument count ${argc} to ${name}, expected ${ci.argmin} arguments\n`;
  return `bad argument count ${argc} to ${name}, expected between ${ci.argmin} and ${ci.argmax} arguments\n`;
}
