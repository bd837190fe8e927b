import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { imgTopLevel } from '../src/cli/img/toplevel.js';
import { LOG_LEVELS, setLogLevel } from '../src/log.js';
import { BlockBufferedOutput, type ToolContext, ToolExit } from './commands/tool-context.js';

/** The subcommands, each loaded only when it runs (or for the overall help): a daemon start loads no image tools, and the reverse. */
const SUBCOMMANDS: Record<string, () => Promise<(program: Command, ctx: ToolContext) => void>> = {
  img: async () => (await import('./commands/img.js')).addImgCommand,
  io: async () => (await import('./commands/io.js')).addIoCommand,
  demo: async () => (await import('./commands/demo.js')).addDemoCommand,
  daemon: async () => (await import('./commands/daemon.js')).addDaemonCommand,
  system: async () => (await import('./commands/system.js')).addSystemCommand,
  qmp: async () => (await import('./commands/qmp.js')).addQmpCommand,
  replay: async () => (await import('./commands/replay.js')).addReplayCommand,
};

/** Where the subcommand's name is, past the global options; -1 when the arguments name none (help, version, an error). */
function subcommandIndex(args: readonly string[]): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--log-level') i++;
    else if (!a.startsWith('--log-level=')) return Object.hasOwn(SUBCOMMANDS, a) ? i : -1;
  }
  return -1;
}

/** The process's streams as a tool's context; stdin is read only when io asks for its lines. */
function processContext(rawArgs: readonly string[], stdio: boolean): ToolContext & { close(): void } {
  // The reader is made on the first request for lines and at once buffers
  // only lines read after it exists (the image is opened before the first
  // line is wanted); made lazily so that -c runs never touch stdin.
  let rl: ReturnType<typeof createInterface> | undefined;
  const stdout = stdio && !process.stdout.isTTY ? new BlockBufferedOutput((b) => void process.stdout.write(b)) : undefined;
  return {
    rawArgs,
    out: stdout ? (t) => stdout.write(t) : (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
    flush: () => stdout?.flush(),
    lines: {
      [Symbol.asyncIterator]: () => {
        rl ??= createInterface({ input: process.stdin, crlfDelay: Infinity });
        return rl[Symbol.asyncIterator]();
      },
    },
    close: () => {
      rl?.close();
      stdout?.flush();
    },
  };
}

/** "7.2.0 (blockemu 0.1.0)": the version the tools print after their name. */
const versionText = (v: { qemu: { major: number; minor: number; micro: number }; package: string }) => `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro} (${v.package})`;

/**
 * The `blockemu` command line (argv as process.argv: node and script first).
 * `img` and `io` resolve to their exit code and write only through `ctx`
 * (the process's streams when none is given), so they also run in-process;
 * the other subcommands set the process's exit code themselves.
 */
export async function main(argv: readonly string[], ctx?: Omit<ToolContext, 'rawArgs' | 'exitCode'>): Promise<number | undefined> {
  // A daemon start skips commander (its modules and node:child_process): `daemon` hands every argument to runDaemon anyway.
  if (argv[2] === 'daemon' && ctx === undefined) {
    const { runDaemon } = await import('../src/cli/daemon-main.js');
    process.exitCode = await runDaemon(argv.slice(3));
    return undefined;
  }
  let args = argv.slice(2);
  let at = subcommandIndex(args);
  if (at >= 0 && args[at] === 'img') {
    // qemu-img's own top level (no arguments, -h, -V, an unknown command) answers before any subcommand parses.
    const top = await imgTopLevel(args.slice(at + 1), async () => ({ version: versionText((await import('../src/daemon.js')).VERSION), drivers: (await import('../src/blockdev/open.js')).SUPPORTED_DRIVERS }));
    if (top && 'code' in top) {
      const out = ctx ?? { out: (t: string) => process.stdout.write(t), err: (t: string) => process.stderr.write(t) };
      if (top.stderr) out.err(top.stderr);
      if (top.stdout) out.out(top.stdout);
      return top.code;
    }
    if (top) {
      args = [...args.slice(0, at + 1), ...top.rest];
      argv = [...argv.slice(0, 2), ...args];
      at = subcommandIndex(args);
    }
  }
  const rawArgs = at < 0 ? [] : args.slice(at + 1);
  // qemu-img's and qemu-io's stdout is C stdio's: block-buffered into a pipe or file, so what they print to stderr comes first.
  const own = ctx === undefined ? processContext(rawArgs, at >= 0 && (args[at] === 'img' || args[at] === 'io')) : undefined;
  const tool: ToolContext = own ?? { ...ctx!, rawArgs };
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

  const only = at < 0 ? undefined : args[at];
  for (const name of only ? [only] : Object.keys(SUBCOMMANDS)) (await SUBCOMMANDS[name]!())(program, tool);

  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    if (!(err instanceof ToolExit)) throw err;
    tool.exitCode = err.code;
  } finally {
    own?.close();
  }
  return tool.exitCode;
}
