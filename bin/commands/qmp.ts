import type { Command } from 'commander';
import { qmpMain } from '../../src/cli/qmp-shell.js';

/** `blockemu qmp -s SOCKET [COMMAND [ARGS…]]`: a QMP client for people. */
export function addQmpCommand(program: Command): void {
  program
    .command('qmp')
    .description('send QMP commands to a daemon (one-shot, or an interactive shell without COMMAND)')
    .requiredOption('-s, --socket <path>', 'the monitor socket')
    .argument('[command]', 'a QMP command, e.g. query-named-block-nodes')
    .argument('[args...]', "its arguments as JSON ('{\"flat\": true}') or key=value words")
    .action(async (command: string | undefined, args: string[], o: { socket: string }) => {
      process.exitCode = await qmpMain({ out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) }, o.socket, command, args);
    });
}
