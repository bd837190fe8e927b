/**
 * How `blockemu img` talks to the user. Messages keep qemu-img 7.2's wording
 * (scripts and people know it) but carry our program name: where qemu-img
 * prints "qemu-img: msg" we print "blockemu img: msg", and its usage hint
 * "Try 'qemu-img --help' …" becomes "Try 'blockemu img --help' …". The interop
 * tests normalise exactly that substitution and nothing else.
 */
import { errorHint } from '../../image/errors.js';
import { IMG_PROG } from '../tool-names.js';
export const PROG = IMG_PROG;

/** Where a subcommand writes: stdout for results and progress, stderr for errors. */
export interface ImgIo {
  out(text: string): void;
  err(text: string): void;
  /** fflush(stdout): where qemu-img flushes (its progress line), when stdout is buffered. */
  flush?(): void;
}

export const processIo: ImgIo = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

/**
 * A failure qemu-img would report and exit on. Each entry of `lines` is one
 * error_report() call (prefixed with the program name); a line may itself
 * contain "\n" for continuation text qemu-img prints without a prefix.
 */
export class ImgFailure extends Error {
  readonly lines: string[];
  readonly exitCode: number;
  /** Followed by "Try '… --help' for more information" (qemu-img's error_exit). */
  readonly usage: boolean;
  /** qemu-img omits the final newline after a few messages ("Detected format of raw."). */
  readonly noFinalNewline: boolean;

  constructor(lines: string | string[], opts: { exitCode?: number; usage?: boolean; noFinalNewline?: boolean } = {}) {
    const all = typeof lines === 'string' ? [lines] : lines;
    super(all.join('\n'));
    this.name = 'ImgFailure';
    this.lines = all;
    this.exitCode = opts.exitCode ?? 1;
    this.usage = opts.usage ?? false;
    this.noFinalNewline = opts.noFinalNewline ?? false;
  }

  withExitCode(code: number): ImgFailure {
    return new ImgFailure(this.lines, { exitCode: code, usage: this.usage, noFinalNewline: this.noFinalNewline });
  }
}

/** -h/--help of a subcommand: its usage line on stdout, exit 0 (qemu-img's help() exits where the option loop meets it). */
export class ImgHelpShown extends Error {
  constructor(readonly usage: string) {
    super('help');
    this.name = 'ImgHelpShown';
  }
}

/** qemu-img's error_exit: a usage problem, exit 1. */
export function usageError(message: string): ImgFailure {
  return new ImgFailure(message, { usage: true });
}

export function printFailure(io: ImgIo, f: ImgFailure): void {
  const text = f.lines.map((l) => `${PROG}: ${l}`).join('\n');
  io.err(f.noFinalNewline ? text : `${text}\n`);
  if (f.usage) io.err(`Try '${PROG} --help' for more information\n`);
}

/**
 * Runs a subcommand body and turns its outcome into an exit code. Anything
 * thrown that is not an ImgFailure is an unexpected error: reported with its
 * message (no stack: this is a CLI) under `failCode`.
 */
export async function runSubcommand(io: ImgIo, body: () => Promise<number>, failCode = 1): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof ImgHelpShown) {
      io.out(`usage: ${PROG} ${err.usage}\n`);
      return 0;
    }
    if (err instanceof ImgFailure) {
      printFailure(io, err);
      return err.exitCode;
    }
    const msg = err instanceof Error ? err.message : String(err);
    // error_report_err: a hint goes on the lines after the message.
    const hint = errorHint(err);
    printFailure(io, new ImgFailure(hint === undefined ? msg : `${msg}\n${hint}`));
    return failCode;
  }
}
