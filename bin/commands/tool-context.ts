import type { ImgIo } from '../../src/cli/img/output.js';

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
