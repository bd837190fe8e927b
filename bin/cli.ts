import type { Command } from 'commander';
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

/** The `blockemu` command line (argv as process.argv: node and script first). */
export async function main(argv: readonly string[]): Promise<void> {
  // A daemon start skips commander (its modules and node:child_process): `daemon` hands every argument to runDaemon anyway.
  if (argv[2] === 'daemon') {
    const { runDaemon } = await import('../src/cli/daemon-main.js');
    process.exitCode = await runDaemon(argv.slice(3));
    return;
  }
  const { Command, Option } = await import('commander');
  const program = new Command();
  program
    .name('blockemu')
    // Subcommand options stay the subcommand's: `daemon` takes qemu-storage-daemon's own.
    .enablePositionalOptions()
    .description("QEMU's block layer in TypeScript: images, backup jobs, transactions and QMP")
    .version('0.1.0', '-V, --version')
    .addOption(new Option('--log-level <level>', 'log level for stderr').choices(LOG_LEVELS).env('BLOCKEMU_LOG_LEVEL').default('warn'))
    .hook('preAction', (cmd) => setLogLevel(cmd.opts().logLevel as string));

  const only = subcommandOf(argv.slice(2));
  for (const name of only ? [only] : Object.keys(SUBCOMMANDS)) (await SUBCOMMANDS[name]!())(program);

  await program.parseAsync([...argv]);
}
