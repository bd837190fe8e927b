import type { Command } from 'commander';
import { ioCommandLine } from '../../src/cli/io.js';
import { IO_PROG } from '../../src/cli/tool-names.js';
import { type ToolContext, withDriverMessages } from './tool-context.js';

/**
 * `blockemu io [qemu-io options…] [file]`: commander only hands over the raw
 * arguments; they are parsed with qemu-io's getopt rules and messages
 * (src/cli/io-args.ts). Commander drops a "--" before the first operand,
 * but to qemu-io's getopt "--" matters (what follows it is all operands:
 * `-- -f raw img` is three files, hence the usage text), so the arguments
 * are taken as typed, from the context.
 */

export function addIoCommand(program: Command, ctx: ToolContext): void {
  program
    .command('io')
    .description('run qemu-io commands (read, write, discard, map …) on an image (same options as qemu-io)')
    .helpOption(false)
    .passThroughOptions()
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async () => {
      ctx.exitCode = await withDriverMessages(ctx, IO_PROG, () => ioCommandLine(ctx, ctx.rawArgs));
    });
}
