import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { ioCommandLine } from '../../src/cli/io.js';

/**
 * `blockemu io [qemu-io options…] [file]`: commander only hands over the raw
 * arguments; they are parsed with qemu-io's getopt rules and messages
 * (src/cli/io-args.ts).
 */
export function addIoCommand(program: Command): void {
  program
    .command('io')
    .description('run qemu-io commands (read, write, discard, map …) on an image (same options as qemu-io)')
    .helpOption(false)
    .passThroughOptions()
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async () => {
      const args = rawArgs(process.argv.slice(2));
      // Without -c, commands come from stdin, one a line. The reader is made
      // at once: it buffers only lines read after it exists, and the image
      // is opened before the first line is wanted. It is made lazily so
      // that -c runs never touch stdin.
      let rl: ReturnType<typeof createInterface> | undefined;
      const lines: AsyncIterable<string> = {
        [Symbol.asyncIterator]: () => {
          rl ??= createInterface({ input: process.stdin, crlfDelay: Infinity });
          return rl[Symbol.asyncIterator]();
        },
      };
      try {
        process.exitCode = await ioCommandLine(
          { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t), lines },
          args,
        );
      } finally {
        rl?.close();
      }
    });
}

/**
 * The arguments after "io", as typed. Commander drops a "--" before the
 * first operand, but to qemu-io's getopt "--" matters (what follows it is
 * all operands: `-- -f raw img` is three files, hence the usage text).
 * Global options come before the subcommand: --log-level takes a value.
 */
function rawArgs(argv: readonly string[]): string[] {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--log-level') i++;
    else if (!a.startsWith('--log-level=')) return argv.slice(i + 1);
  }
  return [];
}
