import { imageOptsTarget } from './image-opts.js';
import { addObject } from './objects.js';
import { BDRV_MAX_LENGTH } from '../../image/resize.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { type BlockImage, type Preallocation, PREALLOCATIONS } from '../../image/types.js';
import { Getopt } from '../getopt.js';
import { probedRawWarning, tryOpen } from './open.js';
import { type ImgIo, ImgFailure, PROG, usageError } from './output.js';
import { HeldBitmaps } from './resize-bitmaps.js';
import { parseQemuSize, sizeParamError } from './size-arg.js';

export const RESIZE_USAGE = 'resize [--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size';

const LONG_OPTIONS = [
  { name: 'help', hasArg: false },
  { name: 'object', hasArg: true },
  { name: 'image-opts', hasArg: false },
  { name: 'preallocation', hasArg: true },
  { name: 'shrink', hasArg: false },
];

/**
 * `blockemu img resize` (qemu-img 7.2's img_resize), given the arguments
 * after "resize". As in qemu-img, the size is taken off the end before the
 * options are parsed, so "-1G" is a size, not an option; the options are
 * parsed with getopt_long's rules (src/cli/getopt.ts), and the checks run
 * in qemu-img's order with its messages and exit code 1.
 */
export async function imgResize(io: ImgIo, args: readonly string[]): Promise<number> {
  if (args.length < 2) throw usageError('Not enough arguments');
  let sizeText = args[args.length - 1]!;
  let format: string | undefined;
  let quiet = false;
  let imageOpts = false;
  let shrink = false;
  let prealloc: Preallocation = 'off';
  const getopt = new Getopt('resize', args.slice(0, -1), 'f:hq', LONG_OPTIONS);
  for (const e of getopt) {
    if (e.kind === 'missing') throw usageError(`missing argument for option '${e.blamed}'`);
    if (e.kind === 'unrecognized') throw usageError(`unrecognized option '${e.blamed}'`);
    switch (e.name) {
      case 'h':
      case 'help':
        io.out(`usage: ${PROG} ${RESIZE_USAGE}\n`);
        return 0;
      case 'f':
        format = e.value;
        break;
      case 'q':
        quiet = true;
        break;
      case 'object':
        addObject(e.value ?? '');
        break;
      case 'image-opts':
        imageOpts = true;
        break;
      case 'preallocation':
        if (!(PREALLOCATIONS as readonly string[]).includes(e.value!)) throw new ImgFailure(`Invalid preallocation mode '${e.value}'`);
        prealloc = e.value as Preallocation;
        break;
      case 'shrink':
        shrink = true;
        break;
    }
  }
  const operands = getopt.operands();
  if (operands.length !== 1) throw usageError('Expecting image file name and size');
  const filename = operands[0]!;

  const relative = sizeText.startsWith('+') ? 1n : sizeText.startsWith('-') ? -1n : 0n;
  if (relative !== 0n) sizeText = sizeText.slice(1);
  const parsed = parseQemuSize(sizeText);
  if (!parsed.ok) {
    throw new ImgFailure(parsed.reason === 'range' ? `Value '${sizeText}' is out of range for parameter 'size'` : sizeParamError('size'));
  }
  if (parsed.hexWithSuffix) io.err(`${PROG}: warning: Using a multiplier suffix on hex numbers is deprecated: ${sizeText}\n`);
  // qemu-img keeps the size in an int64_t: a value of 2^63 or more turns negative.
  const n = BigInt.asIntN(64, parsed.value);

  const target = imageOpts ? await imageOptsTarget(io, filename, format, false) : { filename, format };
  // BDRV_O_RDWR | BDRV_O_RESIZE: the image is locked for writing and resizing (qemu-img resize has no -U).
  const r = await tryOpen(target.filename, { format: target.format, readOnly: false, persistentBitmaps: true, flags: { resize: true } });
  if ('inner' in r) throw new ImgFailure(`Could not open '${filename}': ${r.inner}`);
  const image = r.image;
  if (target.format === undefined && image.format === 'raw') io.err(probedRawWarning(filename));
  let bitmaps: HeldBitmaps | undefined;
  try {
    if (image instanceof Qcow2Image) bitmaps = await HeldBitmaps.load(image);
    const resized = await resize(io, image, n, relative, prealloc, shrink, bitmaps);
    if (!quiet) io.out('Image resized.\n');
    return resized;
  } finally {
    try {
      await bitmaps?.store();
    } finally {
      await image.close();
    }
  }
}

async function resize(io: ImgIo, image: BlockImage, n: bigint, relative: bigint, prealloc: Preallocation, shrink: boolean, bitmaps: HeldBitmaps | undefined): Promise<number> {
  // blk_getlength counts whole sectors: a raw file of 1000 bytes is 1024 long to qemu-img.
  const current = BigInt(Math.ceil(image.size() / 512) * 512);
  const total = relative !== 0n ? BigInt.asIntN(64, current + BigInt.asIntN(64, n * relative)) : n;
  if (total <= 0n) throw new ImgFailure('New image size must be positive');
  if (total <= current && prealloc !== 'off') throw new ImgFailure('Preallocation can only be used for growing images');
  if (total < current && !shrink) {
    throw new ImgFailure([
      'Use the --shrink option to perform a shrink operation.',
      "warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.",
    ]);
  }
  if (total > BDRV_MAX_LENGTH) throw new ImgFailure(`offset(${total}) exceeds maximum(${BDRV_MAX_LENGTH})`);
  if (total > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImgFailure(`Image size ${total} is beyond what blockemu supports (${Number.MAX_SAFE_INTEGER} bytes)`);
  try {
    await image.resize(Number(total), {
      preallocation: prealloc,
      heldBitmap: bitmaps?.held,
      warn: (m) => io.err(`${PROG}: warning: ${m}\n`),
    });
  } catch (err) {
    throw new ImgFailure(err instanceof Error ? err.message : String(err));
  }
  return 0;
}
