import { type Command, Option } from 'commander';
import { imgCheck } from '../../src/cli/img-check.js';
import type { ImgIo } from '../../src/cli/img/output.js';
import { withObjectOption } from './img-objects.js';

/** -U as qemu-img has it: force-share=on, refused where the image would be written. */
export const FORCE_SHARE_HELP = 'force shared permissions: open read-only, sharing everything, so image locks other processes hold are not checked';

/** `blockemu img check`: argument parsing only; src/cli/img-check.ts does the work. */
export function addImgCheck(img: Command, run: (body: (io: ImgIo) => Promise<number>) => Promise<void>): void {
  withObjectOption(img.command('check'))
    .description('check an image for consistency, optionally repairing it (qemu-img check)')
    .usage('[-q] [-f fmt] [--image-opts] [--output=ofmt] [-r [leaks | all]] [-U] filename')
    .option('-f <fmt>', 'image format (probed when absent)')
    .option('--image-opts', 'the operand is an option string (driver=qcow2,file.filename=…, any driver), not a file name')
    .option('-r <mode>', "repair: 'leaks' (refcounts too high) or 'all' (everything repairable)")
    .addOption(new Option('--output <format>', "'human' (default) or 'json'"))
    .option('-q', 'quiet: print nothing on stdout')
    .option('-T <src_cache>', 'accepted for compatibility (blockemu has no host cache modes)')
    .option('-U, --force-share', `${FORCE_SHARE_HELP} (not with -r)`)
    .argument('[args...]', 'filename')
    .action(async (args: string[], o: { f?: string; imageOpts?: boolean; r?: string; output?: string; q?: boolean; forceShare?: boolean }) =>
      run((io) => imgCheck(io, { format: o.f, imageOpts: o.imageOpts === true, repair: o.r, output: o.output, quiet: o.q === true, forceShare: o.forceShare === true, args })),
    );
}
