import type { Command } from 'commander';
import { replayMain } from '../../src/cli/replay.js';

/** `blockemu replay FILE --against SOCKET | --qsd | --blockemu`: plays a `daemon --record` file and compares. */
export function addReplayCommand(program: Command): void {
  program
    .command('replay')
    .description('play the client side of a `daemon --record` file against a daemon and compare replies and events (exit 1 on a difference)')
    .argument('<file>', 'the recording')
    .option('--against <socket>', 'a running daemon’s monitor socket')
    .option('--qsd', 'start qemu-storage-daemon with the recorded command line')
    .option('--blockemu', 'start blockemu daemon with the recorded command line')
    .option('--dir <dir>', 'stands for the recording’s working directory: paths under it are rewritten to this one')
    .option('--pace', 'keep the recording’s pace: send each input no earlier than it was sent in the recording')
    .option('--timeout <seconds>', 'how long to wait for each reply or event', '30')
    .option('--ignore-key <key>', 'leave this key out of every reply and event (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .action(async (file: string, o: { against?: string; qsd?: boolean; blockemu?: boolean; dir?: string; timeout: string; ignoreKey: string[]; pace?: boolean }) => {
      const io = { out: (t: string) => void process.stdout.write(t), err: (t: string) => void process.stderr.write(t) };
      if (o.qsd && o.blockemu) {
        io.err('blockemu replay: give one of --against SOCKET, --qsd, --blockemu\n');
        process.exitCode = 2;
        return;
      }
      const timeout = Number(o.timeout);
      if (!(timeout > 0)) {
        io.err(`blockemu replay: --timeout: not a number of seconds: ${o.timeout}\n`);
        process.exitCode = 2;
        return;
      }
      process.exitCode = await replayMain(io, file, {
        against: o.against,
        start: o.qsd ? 'qsd' : o.blockemu ? 'blockemu' : undefined,
        dir: o.dir,
        timeoutMs: timeout * 1000,
        ignoreKeys: o.ignoreKey,
        pace: o.pace,
      });
    });
}
