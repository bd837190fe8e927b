import type { AioQueue } from './aio-queue.js';
import type { QemuIoTarget } from './target.js';

/** One piece of a command's output, in the order it was produced. */
export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  text: string;
  /** Printed by error_report or warn_report: inside a monitor command that goes to the monitor, not to stderr. */
  report?: boolean;
}

/**
 * Collects what a command prints. qemu-io writes results with printf
 * (stdout), a few complaints with fprintf(stderr), and others with
 * error_report, which adds the program name ("qemu-io: …") on the command
 * line but nothing inside a monitor; `errorPrefix` says which.
 */
export class Output {
  readonly chunks: OutputChunk[] = [];
  constructor(private readonly errorPrefix: string) {}

  out(text: string): void {
    this.chunks.push({ stream: 'stdout', text });
  }
  err(text: string): void {
    this.chunks.push({ stream: 'stderr', text });
  }
  /** error_report(): one line to stderr with the program prefix. */
  report(message: string): void {
    this.chunks.push({ stream: 'stderr', text: `${this.errorPrefix}${message}\n`, report: true });
  }
  /** warn_report(). */
  warn(message: string): void {
    this.chunks.push({ stream: 'stderr', text: `${this.errorPrefix}warning: ${message}\n`, report: true });
  }
}

export interface InterpreterOptions {
  /** Put before error_report() messages: "qemu-io: " style on a command line, "" in a monitor (the default). */
  errorPrefix?: string;
  /**
   * Whether discards reach the image and `write -z -u` may deallocate —
   * QEMU's BDRV_O_UNMAP, i.e. the node's discard=unmap. qemu-io opens images
   * with it set, so it defaults to true.
   */
  unmap?: boolean;
  /** Monotonic clock in nanoseconds, for the timing lines (tests pass a fake one). */
  now?: () => bigint;
  /** runQemuIoCommand: where a request still in flight when the command returned reports (one held at a breakpoint). */
  late?: (chunks: OutputChunk[]) => void;
}

export interface CommandContext {
  /** The command line split into words; argv[0] is the command name as typed. */
  argv: string[];
  /** Present for every command that is not global (the interpreter checks). */
  target: QemuIoTarget;
  out: Output;
  unmap: boolean;
  now: () => bigint;
  /** The whole command table (for help). */
  commands: readonly CommandInfo[];
  /** Where aio_read/aio_write put their requests (aio_flush drains it). */
  aio: AioQueue;
  /** What the tool does for the commands that act on the process (close, sigraise, abort). */
  host: IoHost;
}

/** The tool's side of close, sigraise and abort (QemuIoSession); the monitor has none of them. */
export interface IoHost {
  /** Closes the image (outstanding requests already completed). */
  close?(): Promise<void>;
  /**
   * Raises `signal` in the process (0: nothing happens). `sigraise`
   * flushes stdio first (what was printed is written out); `abort` is
   * abort(3), which leaves a block-buffered stdout unwritten.
   */
  raise?(signal: number, how: 'sigraise' | 'abort'): Promise<void>;
  /** Opens an image as the tool's command line would (`open`); prints why not to `out`; true when opened. */
  open?(req: OpenRequest, out: Output): Promise<boolean>;
}

/** `open`'s arguments: the tool's flags as words (-r, -t MODE, …), the -o option strings, the path. */
export interface OpenRequest {
  flags: string[];
  options: string[];
  path?: string;
}

/** A qemu-io command: its table entry (what help and the argument-count check use) and its body. */
export interface CommandInfo {
  name: string;
  altname?: string;
  argmin: number;
  /** -1: no upper bound. */
  argmax: number;
  /** Synopsis of the arguments, as qemu-io's help shows it (absent: none shown). */
  args?: string;
  oneline: string;
  /** Extended help text printed by "help NAME" after the synopsis line. */
  help?: string;
  /** Works without an open image. */
  global?: boolean;
  /** Needs write permission (refused on a read-only node before anything is parsed). */
  write?: boolean;
  /** Runs the command; false = it failed (qemu-io's negative return). */
  run(ctx: CommandContext): Promise<boolean>;
}

/** qemu-io's qemuio_command_usage: the synopsis under the command's real name. */
export function usage(ctx: CommandContext, ci: CommandInfo): false {
  ctx.out.out(`${ci.name} ${ci.args ?? '(null)'} -- ${ci.oneline}\n`);
  return false;
}
