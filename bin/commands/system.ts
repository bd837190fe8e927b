import type { Command } from 'commander';
import { runSystem } from '../../src/cli/system-main.js';

/**
 * `blockemu system [qemu-system-x86_64 options…]`: commander only hands
 * over the raw arguments; they are parsed with qemu-system's own rules and
 * messages (src/cli/system-args.ts).
 */
export function addSystemCommand(program: Command): void {
  program
    .command('system')
    .description('a storage-only stand-in for qemu-system-x86_64: its -blockdev, -chardev, -mon, -qmp, -qtest, -S options and VM-level QMP, no guest')
    .helpOption(false)
    .passThroughOptions()
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await runSystem(args);
    });
}
