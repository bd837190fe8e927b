import { type Command, Option } from 'commander';
import { imgCheck } from '../../src/cli/img-check.js';
import { processIo, runSubcommand } from '../../src/cli/img/output.js';

/** `blockemu img check`: argument parsing only; src/cli/img-check.ts does the work. */
export function addImgCheck(img: Command): void {
  img
    .command('check')
    .description('check an image for consistency, optionally repairing it (qemu-img check)')
    .usage('[-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-U] filename')
    .option('-f <fmt>', 'image format (probed when absent)')
    .option('-r <mode>', "repair: 'leaks' (refcounts too high) or 'all' (everything repairable)")
    .addOption(new Option('--output <format>', "'human' (default) or 'json'"))
    .option('-q', 'quiet: print nothing on stdout')
    .option('-T <src_cache>', 'accepted for compatibility (blockemu has no host cache modes)')
    .option('-U, --force-share', 'accepted for compatibility (blockemu takes no image locks)')
    .argument('[args...]', 'filename')
    .action(async (args: string[], o: { f?: string; r?: string; output?: string; q?: boolean }) => {
      process.exitCode = await runSubcommand(
        processIo,
        () => imgCheck(processIo, { format: o.f, repair: o.r, output: o.output, quiet: o.q === true, args }),
        1,
      );
    });
}
