import { createInterface } from 'node:readline';
import { type Command, CommanderError } from 'commander';
import { IO_USAGE, ioMain, PROG } from '../../src/cli/io.js';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/**
 * Commander's parse errors in getopt's words, as qemu-io prints them
 * ("invalid option -- 'x'", "option requires an argument -- 'f'"),
 * followed by the usage on stdout and exit code 1.
 */
function getoptStyleErrors(err: CommanderError): never {
  const quoted = /'([^']*)'/.exec(err.message)?.[1] ?? '';
  let message: string | undefined;
  if (err.code === 'commander.unknownOption') {
    message = quoted.startsWith('--') ? `unrecognized option '${quoted}'` : `invalid option -- '${quoted.slice(1, 2)}'`;
  } else if (err.code === 'commander.optionMissingArgument') {
    const flag = quoted.split(/[ ,]/)[0] ?? '';
    message = flag.startsWith('--') ? `option '${flag}' requires an argument` : `option requires an argument -- '${flag.slice(1)}'`;
  } else if (err.code !== 'commander.helpDisplayed' && err.code !== 'commander.help' && err.code !== 'commander.version') {
    message = err.message.replace(/^error: /, '');
  }
  if (message === undefined) process.exit(err.exitCode);
  process.stderr.write(`${PROG}: ${message}\n`);
  process.stdout.write(IO_USAGE);
  process.exit(1);
}

/** `blockemu io [-f fmt] [-r] [-d discard] [-c cmd]… [file]`, like qemu-io. */
export function addIoCommand(program: Command): void {
  program
    .command('io')
    .description('run qemu-io commands (read, write, discard, map …) on an image (like qemu-io)')
    .usage('[-f fmt] [-r] [-d discard] [-c cmd]... [file]')
    .option('-c, --cmd <cmd>', 'execute a qemu-io command (repeatable; run in order)', collect, [] as string[])
    .option('-f, --format <fmt>', 'image format (probed when absent)')
    .option('-r, --read-only', 'open the image read-only')
    .option('-d, --discard <mode>', 'discard mode: ignore/off or unmap/on (default unmap)')
    .option('-U, --force-share', 'force shared permissions (with -r): image locks other processes hold are not checked')
    .argument('[file...]', 'the image')
    .exitOverride(getoptStyleErrors)
    .configureOutput({ outputError: () => undefined })
    .action(async (file: string[], o: { cmd: string[]; format?: string; readOnly?: boolean; discard?: string; forceShare?: boolean }) => {
      // Without -c, commands come from stdin, one a line. The iterator is
      // taken at once: it buffers only lines read after it exists, and the
      // image is opened before the first line is wanted.
      const rl = o.cmd.length === 0 ? createInterface({ input: process.stdin, crlfDelay: Infinity }) : undefined;
      const it = rl?.[Symbol.asyncIterator]();
      try {
        process.exitCode = await ioMain(
          {
            out: (t) => void process.stdout.write(t),
            err: (t) => void process.stderr.write(t),
            lines: it && { [Symbol.asyncIterator]: () => it },
          },
          { format: o.format, readOnly: o.readOnly === true, forceShare: o.forceShare === true, discard: o.discard, commands: o.cmd, args: file },
        );
      } finally {
        rl?.close();
      }
    });
}
