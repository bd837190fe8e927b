#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';
import { Command, Option } from 'commander';
import { LOG_LEVELS, setLogLevel } from '../src/log.js';

/** The subcommands, each loaded only when it runs (or for the overall help): a daemon start loads no image tools, and the reverse. */
const SUBCOMMANDS: Record<string, () => Promise<(program: Command) => void>> = {
  img: async () => (await import('./commands/img.js')).addImgCommand,
  io: async () => (await import('./commands/io.js')).addIoCommand,
  demo: async () => (await import('./commands/demo.js')).addDemoCommand,
  daemon: async () => (await import('./commands/daemon.js')).addDaemonCommand,
  system: async () => (await import('./commands/system.js')).addSystemCommand,
  qmp: async () => (await import('./commands/qmp.js')).addQmpCommand,
  replay: async () => (await import('./commands/replay.js')).addReplayCommand,
};

/** The subcommand the arguments name, past the global options; undefined when they name none (help, version, an error). */
function subcommandOf(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--log-level') i++;
    else if (!a.startsWith('--log-level=')) return Object.hasOwn(SUBCOMMANDS, a) ? a : undefined;
  }
  return undefined;
}

// No inlining in V8's optimising compiler. A daemon's hot path is a deep
// stack of small async functions (job, copier, node, driver, image, file);
// inlining them into each other makes every optimised compile large (20-40 ms
// each, 0.9 s of compiler threads in a fresh daemon's first 1 GiB backup,
// competing on a small machine with the I/O threads) for no gain once warm
// (measured: the same CPU per warm backup, a third less per cold one).
setFlagsFromString('--no-turbo-inlining');

// A reader that went away (`blockemu … | head`) ends the output, not the process with a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

const program = new Command();
program
  .name('blockemu')
  // Subcommand options stay the subcommand's: `daemon` takes qemu-storage-daemon's own.
  .enablePositionalOptions()
  .description("QEMU's block layer in TypeScript: images, backup jobs, transactions and QMP")
  .version('0.1.0', '-V, --version')
  .addOption(new Option('--log-level <level>', 'log level for stderr').choices(LOG_LEVELS).env('BLOCKEMU_LOG_LEVEL').default('warn'))
  .hook('preAction', (cmd) => setLogLevel(cmd.opts().logLevel as string));

const only = subcommandOf(process.argv.slice(2));
for (const name of only ? [only] : Object.keys(SUBCOMMANDS)) (await SUBCOMMANDS[name]!())(program);

await program.parseAsync(process.argv);
