import { type Command, CommanderError, Option } from 'commander';
import { type BitmapAction, imgBitmap } from '../../src/cli/img/bitmap.js';
import { imgCompare } from '../../src/cli/img/compare.js';
import { imgConvert } from '../../src/cli/img/convert.js';
import { CREATE_USAGE, imgCreateCommand } from '../../src/cli/img/create.js';
import { imgInfo } from '../../src/cli/img/info.js';
import { imgMap } from '../../src/cli/img/map.js';
import { imgResize, RESIZE_USAGE } from '../../src/cli/img/resize.js';
import { imgSnapshot, SNAPSHOT_USAGE } from '../../src/cli/img/snapshot.js';
import { imgRebase, REBASE_USAGE } from '../../src/cli/img/rebase.js';
import { COMMIT_USAGE, imgCommit } from '../../src/cli/img/commit.js';
import { AMEND_USAGE, imgAmend } from '../../src/cli/img/amend.js';
import { DD_USAGE, imgDd } from '../../src/cli/img/dd.js';
import { BENCH_USAGE, imgBench } from '../../src/cli/img/bench.js';
import { imgMeasure, MEASURE_USAGE } from '../../src/cli/img/measure.js';
import { takeObjectDefs, withObjectOption } from './img-objects.js';
import { addObject, objectsReady, resetObjects } from '../../src/cli/img/objects.js';
import { type ImgIo, printFailure, runSubcommand, usageError } from '../../src/cli/img/output.js';
import { addImgCheck, FORCE_SHARE_HELP } from './img-check.js';
import { IMG_PROG } from '../../src/cli/tool-names.js';
import { type ToolContext, ToolExit, withDriverMessages } from './tool-context.js';

const collect = (v: string, prev: string[]): string[] => [...prev, v];


/**
 * Commander's parse errors in qemu-img's words ("unrecognized option '-x'",
 * "missing argument for option '-f'") with the usage hint, exit code 1.
 */
function qemuStyleParseErrors(io: ImgIo, err: CommanderError): never {
  const quoted = /'([^']*)'/.exec(err.message)?.[1] ?? '';
  if (err.code === 'commander.unknownOption') {
    printFailure(io, usageError(`unrecognized option '${quoted}'`));
    throw new ToolExit(1);
  }
  if (err.code === 'commander.optionMissingArgument') {
    printFailure(io, usageError(`missing argument for option '${quoted.split(/[ ,]/)[0]}'`));
    throw new ToolExit(1);
  }
  if (err.code !== 'commander.helpDisplayed' && err.code !== 'commander.help' && err.code !== 'commander.version') {
    printFailure(io, usageError(err.message.replace(/^error: /, '')));
  }
  throw new ToolExit(err.exitCode);
}

const IMAGE_OPTS_HELP = 'the operand is an option string (driver=qcow2,file.filename=…, any driver), not a file name';

const outputOption = () => new Option('--output <format>', "'human' (default) or 'json'");

/** `blockemu img …`: a subset of qemu-img with the same options and output. */
export function addImgCommand(program: Command, ctx: ToolContext): void {
  /** Runs a subcommand body and records its exit code. */
  const run = async (body: (io: ImgIo) => Promise<number>, failCode = 1): Promise<void> => {
    // --object definitions, checked before the subcommand runs (qemu-img's user_creatable_process_cmdline).
    const withObjects = async (io: ImgIo) => {
      resetObjects();
      for (const d of takeObjectDefs()) addObject(d);
      await objectsReady();
      return body(io);
    };
    ctx.exitCode = await withDriverMessages(ctx, IMG_PROG, () => runSubcommand(ctx, () => withObjects(ctx), failCode));
  };
  const img = program
    .command('img')
    .description('create, inspect, check and convert images (like qemu-img)')
    // Set before the subcommands are added: they inherit both.
    .exitOverride((err) => qemuStyleParseErrors(ctx, err))
    .configureOutput({ writeOut: (t) => ctx.out(t), writeErr: (t) => ctx.err(t), outputError: () => undefined });

  withObjectOption(img.command('info'))
    .description('show information about an image (qemu-img info)')
    .usage('[-f fmt] [--output=ofmt] [--backing-chain] [--image-opts] [-U] filename')
    .option('-f <fmt>', 'image format (probed when absent)')
    .addOption(outputOption())
    .option('--backing-chain', 'show every image of the backing chain')
    .option('--image-opts', 'the operand is an option string (driver=qcow2,file.filename=…), not a file name')
    .option('-U, --force-share', FORCE_SHARE_HELP)
    .argument('[args...]', 'filename')
    .action(async (args: string[], o: { f?: string; output?: string; backingChain?: boolean; imageOpts?: boolean; forceShare?: boolean }) =>
      run((io) =>
        imgInfo(io, { format: o.f, output: o.output, backingChain: o.backingChain === true, imageOpts: o.imageOpts === true, forceShare: o.forceShare === true, args }),
      ),
    );

  withObjectOption(img.command('map'))
    .description('dump the image mapping (qemu-img map)')
    .usage('[-f fmt] [--output=ofmt] [--start-offset=offset] [--max-length=len] [--image-opts] [-U] filename')
    .option('-f <fmt>', 'image format (probed when absent)')
    .addOption(outputOption())
    .option('--start-offset <offset>', 'first byte to map')
    .option('--max-length <len>', 'how many bytes to map')
    .option('--image-opts', IMAGE_OPTS_HELP)
    .option('-U, --force-share', FORCE_SHARE_HELP)
    .argument('[args...]', 'filename')
    .action(async (args: string[], o: { f?: string; output?: string; startOffset?: string; maxLength?: string; imageOpts?: boolean; forceShare?: boolean }) =>
      run((io) =>
        imgMap(io, { format: o.f, output: o.output, startOffset: o.startOffset, maxLength: o.maxLength, imageOpts: o.imageOpts === true, forceShare: o.forceShare === true, args }),
      ),
    );

  withObjectOption(img.command('compare'))
    .description('check whether two images have the same content (qemu-img compare)')
    .usage('[-f fmt] [-F fmt] [--image-opts] [-p] [-q] [-s] [-U] filename1 filename2')
    .option('-f <fmt>', 'format of the first image')
    .option('-F <fmt>', 'format of the second image')
    .option('--image-opts', IMAGE_OPTS_HELP)
    .option('-p', 'show progress')
    .option('-q', 'quiet')
    .option('-s', 'strict: also fail on a size or allocation difference')
    .option('-U, --force-share', FORCE_SHARE_HELP)
    .argument('[args...]', 'filename1 filename2')
    .action(async (args: string[], o: { f?: string; F?: string; imageOpts?: boolean; p?: boolean; q?: boolean; s?: boolean; forceShare?: boolean }) =>
      run(
        (io) =>
          imgCompare(io, { format1: o.f, format2: o.F, imageOpts: o.imageOpts === true, progress: o.p === true, quiet: o.q === true, strict: o.s === true, forceShare: o.forceShare === true, args }),
        2,
      ),
    );

  withObjectOption(img.command('convert'))
    .description('copy an image, possibly to another format (qemu-img convert)')
    .usage('[-c] [-n] [-p] [-q] [-f fmt] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] [-S sparse_size] filename [filename2 [...]] output_filename')
    .option('-f <fmt>', 'source format (probed when absent)')
    .option('-O <output_fmt>', 'target format (default raw)')
    .option('-B <backing_file>', 'backing file of the target')
    .option('-F <backing_fmt>', 'format of the target backing file')
    .option('-o <options>', 'target creation options', collect, [] as string[])
    .option('-l <snapshot_param>', "copy this internal snapshot of the source: 'snapshot.id=ID,snapshot.name=NAME', or an id or name")
    .option('-S <sparse_size>', 'zero run length that is left unallocated (default 4k; 0 = fully allocate)')
    .option('-c', 'compress the target (qcow2)')
    .option('-C', 'copy offloading: taken, and the data copied as without it (what qemu-img does where offloading fails)')
    .option('-n', 'do not create the target: write into the existing output_filename (as large as the sources at least)')
    .option('-p', 'show progress')
    .option('-q', 'quiet')
    .option('-U, --force-share', 'open the source with shared permissions: others may keep writing it (its image locks are not checked)')
    .option('--bitmaps', "copy the source's persistent dirty bitmaps to the target (qcow2)")
    .option('--skip-broken-bitmaps', 'with --bitmaps: leave out inconsistent bitmaps, with a warning each')
    .option('--salvage', 'copy what can be read: a sector that fails to read is written as zeroes, with a warning')
    .option('--image-opts', 'the sources are option strings (driver=qcow2,file.filename=…, any driver), not file names')
    .option('--target-image-opts', 'the target (with -n) is an option string, not a file name')
    .argument('[args...]', 'filename output_filename')
    .action(
      async (
        args: string[],
        o: { f?: string; O?: string; B?: string; F?: string; o: string[]; l?: string; S?: string; c?: boolean; C?: boolean; n?: boolean; p?: boolean; q?: boolean; forceShare?: boolean; salvage?: boolean; bitmaps?: boolean; skipBrokenBitmaps?: boolean; imageOpts?: boolean; targetImageOpts?: boolean },
      ) =>
        run((io) =>
          imgConvert(io, {
            format: o.f,
            outputFormat: o.O,
            backingFile: o.B,
            backingFormat: o.F,
            options: o.o,
            sparseSize: o.S,
            compress: o.c === true,
            copyRange: o.C === true,
            skipCreate: o.n === true,
            progress: o.p === true,
            quiet: o.q === true,
            forceShare: o.forceShare === true,
            salvage: o.salvage === true,
            bitmaps: o.bitmaps === true,
            skipBrokenBitmaps: o.skipBrokenBitmaps === true,
            imageOpts: o.imageOpts === true,
            targetImageOpts: o.targetImageOpts === true,
            ...(o.l !== undefined ? { snapshot: o.l } : {}),
            args,
          }),
        ),
    );

  addImgCheck(img, run);

  // qemu-img takes the size off the end before parsing options ("-1G" is a
  // size), so commander only hands the raw arguments over.
  img
    .command('resize')
    .description("change an image's virtual size (qemu-img resize)")
    .usage(RESIZE_USAGE.replace(/^resize /, ''))
    .helpOption(false)
    .passThroughOptions()
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => run((io) => imgResize(io, args)));

  // The commands below parse their options as qemu-img's getopt_long does (src/cli/img/img-getopt.ts).
  const raw = (name: string, description: string, usage: string, body: (io: ImgIo, args: string[]) => Promise<number>) =>
    img
      .command(name)
      .description(description)
      .usage(usage.slice(name.length + 1))
      .helpOption(false)
      .passThroughOptions()
      .allowUnknownOption()
      .allowExcessArguments()
      .argument('[args...]')
      .action(async (args: string[]) => run((io) => body(io, args)));
  raw('create', 'create an image (qemu-img create)', CREATE_USAGE, imgCreateCommand);
  raw('amend', "change a qcow2 image's compat level, lazy refcounts or size in place (qemu-img amend)", AMEND_USAGE, imgAmend);
  raw('commit', 'write what an image holds into its backing file (qemu-img commit)', COMMIT_USAGE, imgCommit);
  raw('bench', 'run a simple image I/O benchmark (qemu-img bench)', BENCH_USAGE, imgBench);
  raw('dd', 'copy part of an image into a new image, dd-style (qemu-img dd)', DD_USAGE, imgDd);
  raw('measure', 'how large a file an image of a size, or a copy of an image, needs (qemu-img measure)', MEASURE_USAGE, imgMeasure);
  raw('rebase', 'change the backing file of an image, keeping what it reads (qemu-img rebase)', REBASE_USAGE, imgRebase);
  raw('snapshot', "list, create, apply or delete a qcow2 image's internal snapshots (qemu-img snapshot)", SNAPSHOT_USAGE, imgSnapshot);

  // Actions run in command-line order; commander reports each option as it parses it.
  const actions: BitmapAction[] = [];
  const bitmap = withObjectOption(img.command('bitmap'))
    .description("edit a qcow2 image's persistent dirty bitmaps (qemu-img bitmap)")
    .usage('(--merge SOURCE | --add | --remove | --clear | --enable | --disable)... [-b source_file [-F source_fmt]] [-g granularity] [-f fmt] filename bitmap')
    .option('--add', 'add the bitmap (persistent; -g sets its granularity)')
    .option('--remove', 'remove the bitmap')
    .option('--clear', 'clear its bits')
    .option('--enable', 'make it record writes')
    .option('--disable', 'make it stop recording')
    .option('--merge <source>', 'merge bitmap SOURCE (of -b source_file, or of this image) into it')
    .option('-b <source_file>', 'the image --merge reads its source bitmap from')
    .option('-F <source_fmt>', 'format of source_file')
    .option('-g, --granularity <granularity>', 'granularity of an added bitmap')
    .option('-f <fmt>', 'image format (probed when absent)')
    .option('--image-opts', 'the image is an option string (driver=qcow2,file.filename=…), not a file name')
    .argument('[args...]', 'filename bitmap')
    .action(async (args: string[], o: { f?: string; b?: string; F?: string; granularity?: string; imageOpts?: boolean }) =>
      run((io) => imgBitmap(io, { actions, format: o.f, sourceFile: o.b, sourceFormat: o.F, granularity: o.granularity, imageOpts: o.imageOpts === true, args })),
    );
  for (const op of ['add', 'remove', 'clear', 'enable', 'disable'] as const) bitmap.on(`option:${op}`, () => actions.push({ op }));
  bitmap.on('option:merge', (source: string) => actions.push({ op: 'merge', source }));
}
