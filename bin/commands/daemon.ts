import type { Command } from 'commander';
import { runDaemon } from '../../src/cli/daemon-main.js';

/**
 * `blockemu daemon [qemu-storage-daemon options…]`: commander only hands
 * over the raw arguments; they are parsed with qemu-storage-daemon's own
 * rules and messages (src/cli/daemon-args.ts).
 */
export function addDaemonCommand(program: Command): void {
  program
    .command('daemon')
    .description('run the storage daemon (same options as qemu-storage-daemon: --blockdev, --chardev, --monitor, --pidfile …)')
    .helpOption(false)
    .passThroughOptions()
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await runDaemon(args);
    });
}
