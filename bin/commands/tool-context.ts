import type { ImgIo } from '../../src/cli/img/output.js';
import { Qcow2Corruption } from '../../src/image/qcow2/corruption.js';

/**
 * Where `img` and `io` write and how they end. From the command line:
 * the process's streams, stdin and exit code. In-process (the interop
 * tests run thousands of tool command lines; a Node start per line cost
 * most of their time): the caller's buffers, and the code handed back.
 */
export interface ToolContext extends ImgIo {
  /** The arguments after the subcommand's name, as typed (commander drops a leading "--"). */
  readonly rawArgs: readonly string[];
  /** io's command lines when no -c is given (qemu-io then reads stdin). */
  readonly lines?: AsyncIterable<string>;
  /** The exit code the subcommand ended with; undefined until it ends. */
  exitCode?: number;
}

/** Ends a subcommand with an exit code, in place of process.exit (which would end an in-process caller too). */
export class ToolExit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/**
 * A C program's stdout when it is not a terminal (glibc's full buffering):
 * the bytes go out in blocks of the pipe's or file's st_blksize (4 KiB),
 * the rest when the program flushes or exits. Tests that read a tool's
 * stdout and stderr together (2>&1) see the order this makes.
 */
export class BlockBufferedOutput {
  private static readonly BLOCK = 4096;
  private pending: Buffer[] = [];
  private size = 0;

  constructor(private readonly sink: (bytes: Buffer) => void) {}

  write(text: string): void {
    const b = Buffer.from(text);
    this.pending.push(b);
    this.size += b.length;
    if (this.size < BlockBufferedOutput.BLOCK) return;
    const all = Buffer.concat(this.pending);
    const whole = all.length - (all.length % BlockBufferedOutput.BLOCK);
    this.sink(all.subarray(0, whole));
    this.pending = whole < all.length ? [all.subarray(whole)] : [];
    this.size = all.length - whole;
  }

  flush(): void {
    if (this.size === 0) return;
    this.sink(Buffer.concat(this.pending));
    this.pending = [];
    this.size = 0;
  }
}

/**
 * What QEMU's qcow2 driver prints itself while a tool runs (a dirty image's
 * repair on open, corruption warnings) goes to the tool's stderr, after
 * the program's name where error_report would put it; put back after.
 */
export async function withDriverMessages<T>(ctx: ImgIo, prog: string, run: () => Promise<T>): Promise<T> {
  const { warn, reportPrefix } = Qcow2Corruption;
  Qcow2Corruption.warn = (line) => ctx.err(line);
  Qcow2Corruption.reportPrefix = `${prog}: `;
  try {
    return await run();
  } finally {
    Qcow2Corruption.warn = warn;
    Qcow2Corruption.reportPrefix = reportPrefix;
  }
}
