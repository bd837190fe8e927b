import { BlockError } from '../../image/errors.js';
import { checkOptionLists, hasHelpOption, printCreateOptionHelp } from './option-help.js';
import { objectsReady } from './objects.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { createImage, isFormat, openImage } from '../../image/open.js';
import { formatQcow2 } from '../../image/qcow2/create.js';
import { createOnNbdExport, isNbdFilename, withExportFile } from '../../blockdev/nbd-filename.js';
import type { CreateOptions } from '../../image/create.js';
import type { ImageFormat, Preallocation } from '../../image/types.js';
import { type Fail, formatCreateOptions, formattingLine, parseCreateOptions, str } from './create-opts.js';
import { fullBackingName, tryOpen, withHint } from './open.js';
import { ImgGetopt } from './img-getopt.js';
import { type ImgIo, ImgFailure, PROG, usageError } from './output.js';
import { INT64_MAX, parseQemuSize } from './size-arg.js';

export interface CreateArgs {
  format?: string;
  backingFile?: string;
  backingFormat?: string;
  /** Each -o argument, in order (later keys win, as in qemu-img). */
  options: string[];
  quiet: boolean;
  /** -u: the backing file is not opened (BDRV_O_NO_BACKING), so its format and the size must be given. */
  unsafe?: boolean;
  /** FILE [SIZE] */
  args: string[];
}

/** Largest L1 table QEMU accepts (QCOW_MAX_L1_SIZE): bounds the qcow2 virtual size per cluster size. */
const QCOW2_MAX_L1_BYTES = 32 << 20;

export const CREATE_USAGE = 'create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]';
const LONG_OPTIONS = [
  { name: 'help', hasArg: false },
  { name: 'object', hasArg: true },
];

/** `blockemu img create …`: its command line read as qemu-img's getopt_long reads it (":F:b:f:ho:qu"; "--" ends the options, so "-- -1024" is a size). */
export async function imgCreateCommand(io: ImgIo, args: readonly string[]): Promise<number> {
  const a: CreateArgs = { options: [], quiet: false, args: [] };
  const getopt = new ImgGetopt('create', args, ':F:b:f:ho:qu', LONG_OPTIONS, CREATE_USAGE);
  for (const opt of getopt) {
    switch (opt.name) {
      case 'F':
        a.backingFormat = opt.value;
        break;
      case 'b':
        a.backingFile = opt.value;
        break;
      case 'f':
        a.format = opt.value;
        break;
      case 'o':
        a.options.push(opt.value);
        break;
      case 'q':
        a.quiet = true;
        break;
      case 'u':
        a.unsafe = true;
        break;
    }
  }
  // qemu-img makes its --object objects right after its option loop: one that fails ends the command there.
  await objectsReady();
  a.args = getopt.operands();
  return imgCreate(io, a);
}

/** `blockemu img create`: qemu-img create's checks, in its order, and its Formatting line. */
export async function imgCreate(io: ImgIo, a: CreateArgs): Promise<number> {
  const filename = a.args[0];
  checkOptionLists(a.options);
  if (hasHelpOption(a.options)) return printCreateOptionHelp(io, filename, a.format ?? 'raw');
  if (filename === undefined) throw usageError('Expecting image file name');
  let positionalSize: bigint | undefined;
  if (a.args[1] !== undefined) positionalSize = parseSizeArg(io, a.args[1]);
  if (a.args.length > 2) throw usageError(`Unexpected argument: ${a.args[2]}`);

  const fmtName = a.format ?? 'raw';
  if (!isFormat(fmtName)) throw new ImgFailure(`${filename}: Unknown file format '${fmtName}'`);
  const fmt: ImageFormat = fmtName;
  const fail = (msg: string, extra: { noFinalNewline?: boolean } = {}) => new ImgFailure(`${filename}: ${msg}`, extra);

  const values = parseCreateOptions(fmt, a.options, `${filename}: `);
  if (positionalSize !== undefined) {
    if (values.has('size')) throw fail('The image size must be specified only once');
    values.set('size', { text: positionalSize.toString(), value: positionalSize });
  }
  // -b/-F override -o backing_file/backing_fmt (qemu-img applies them last).
  if (a.backingFile !== undefined) {
    if (fmt !== 'qcow2') throw fail(`Backing file not supported for file format '${fmt}'`);
    values.set('backing_file', { text: a.backingFile, value: a.backingFile });
  }
  if (a.backingFormat !== undefined) {
    if (fmt !== 'qcow2') throw fail(`Backing file format not supported for file format '${fmt}'`);
    values.set('backing_fmt', { text: a.backingFormat, value: a.backingFormat });
  }
  const backingFile = str(values.get('backing_file'));
  const backingFmt = str(values.get('backing_fmt'));
  if (backingFile !== undefined) {
    if (backingFile === filename) throw fail('Error: Trying to create an image with the same filename as the backing file');
    if (backingFile === '') throw fail('Expected backing file name, got empty string');
  }
  if (backingFile !== undefined && !a.unsafe) {
    // qemu-img opens the backing chain to check it and, without a size, to take its size.
    const full = fullBackingName(filename, backingFile);
    if ('error' in full) throw fail(full.error);
    // bdrv_img_create opens it bare (no BlockBackend), force-shared and without I/O: it locks nothing, whoever uses it.
    const r = await tryOpen(full.name, { format: backingFmt, readOnly: true, forceShare: true, flags: { noIo: true, bare: true } });
    if ('inner' in r) throw fail(`${r.inner}\nCould not open backing image.`);
    const backingSize = r.image.size();
    const detected = r.image.format;
    await r.image.close();
    if (backingFmt === undefined) throw fail(`Backing file specified without backing format\nDetected format of ${detected}.`, { noFinalNewline: true });
    if (!values.has('size')) values.set('size', { text: String(backingSize), value: BigInt(backingSize) });
  } else if (backingFile !== undefined && backingFmt === undefined) {
    throw fail('Backing file specified without backing format');
  }
  const size = values.get('size')?.value as bigint | undefined;
  if (size === undefined) throw fail('Image creation needs a size parameter');

  if (!a.quiet) {
    io.out(`${formattingLine(filename, fmt, values)}\n`);
    // bdrv_img_create flushes it: the line comes before any error the creation then reports.
    io.flush?.();
  }

  // From here on qemu-img's driver checks, which it runs after printing.
  if (size > INT64_MAX) throw fail('Could not resize image: Image size cannot be negative');
  // file-posix's raw_co_create, before it creates anything.
  const extentSizeHint = (values.get('extent_size_hint')?.value as bigint | undefined) ?? 0n;
  if (extentSizeHint > 0xffffffffn) throw fail('Extent size hint is too large');
  const { opts, preallocation } = formatCreateOptions(fmt, values, fail);
  if (fmt === 'qcow2' && preallocation !== 'off' && backingFile !== undefined && !opts.extendedL2) {
    throw fail('Backing file and preallocation can only be used at the same time if extended_l2 is on');
  }
  if (backingFmt !== undefined && backingFile === undefined) throw fail('Backing format cannot be used without backing file');
  if (backingFmt !== undefined && !isFormat(backingFmt)) throw fail(`Unknown driver '${backingFmt}'`);
  checkSizeLimit(size, fmt, opts.clusterSize ?? 65536, opts.extendedL2 === true, fail);
  opts.size = Number(size);
  if (backingFile !== undefined) {
    opts.backingFile = backingFile;
    opts.backingFormat = backingFmt as ImageFormat;
    // Opened above already (or not at all, with -u).
    opts.recordBackingOnly = true;
  }
  try {
    if (isNbdFilename(filename)) await createOnNbd(filename, fmt, opts, preallocation);
    // The luks format sizes its file itself, once its header's size is known (block_crypto_create_init_func).
    else if (fmt === 'luks') await createImage(filename, { ...opts, preallocation });
    else if (preallocation === 'off') await createImage(filename, opts);
    else await createPreallocated(filename, opts, preallocation);
  } catch (err) {
    throw fail(withHint(createErrorText(err, filename, fmt), err));
  }
  return 0;
}

/**
 * As QEMU's drivers create a preallocated image: empty first, then grown
 * to its size with the preallocation mode (qcow2_co_create's blk_truncate,
 * file-posix's raw_regular_truncate), so the metadata lies where QEMU's does.
 */
export async function createPreallocated(filename: string, opts: CreateOptions, preallocation: Preallocation): Promise<void> {
  // Encryption is qcow2_co_create's last step, after the preallocation.
  const { encryption, ...plain } = opts;
  await createImage(filename, { ...plain, size: 0 });
  // qcow2_co_create grows the image before it names the backing file: the new area is not zeroed against it.
  const image = await openImage(filename, { format: opts.format, openBacking: false });
  try {
    await image.resize(opts.size!, { preallocation });
  } finally {
    await image.close();
  }
  if (encryption) await Qcow2Image.encryptNew(filename, encryption, () => Promise.reject(new BlockError('UNSUPPORTED', 'no backing image is opened while encrypting')));
}

/**
 * bdrv_img_create on an NBD export (nbd:…, nbd+unix://…): the export is
 * "created" as bdrv_co_create_opts_simple creates it (large enough, as
 * NBD cannot grow; its first sector zeroed), then a qcow2 image is laid
 * out on it — qcow2 takes size and preallocation for itself, so the export
 * is opened as it is — and a preallocation grows it, which NBD refuses.
 */
async function createOnNbd(filename: string, fmt: ImageFormat, opts: CreateOptions, preallocation: Preallocation): Promise<void> {
  if (fmt === 'raw') {
    if (preallocation !== 'off') throw new BlockError('UNSUPPORTED', `Unsupported preallocation mode '${preallocation}'`, { errno: 'ENOTSUP' });
    return createOnNbdExport(filename, opts.size!);
  }
  const { encryption, ...plain } = opts;
  if (fmt !== 'qcow2' || encryption || plain.dataFile !== undefined) {
    throw new BlockError('UNSUPPORTED', `blockemu creates only raw and plain qcow2 images on an NBD export`, { errno: 'ENOTSUP' });
  }
  await createOnNbdExport(filename, 0);
  await withExportFile(filename, async (file) => {
    await formatQcow2(file, { ...plain, size: preallocation === 'off' ? plain.size! : 0 });
    if (preallocation === 'off') return;
    const image = await Qcow2Image.openFile(file, { readOnly: false, openBacking: false, openBackingImage: (p, f, depth) => openImage(p, { format: f, readOnly: true, depth }) });
    try {
      await image.resize(plain.size!, { preallocation });
    } catch (err) {
      // qcow2_co_create's words for its blk_co_truncate.
      throw new BlockError('IO', `Could not resize image: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    } finally {
      await image.close();
    }
  });
}

/** The positional SIZE, with qemu-img's messages for sizes it refuses. */
function parseSizeArg(io: ImgIo, text: string): bigint {
  const r = parseQemuSize(text);
  if (!r.ok && r.reason === 'invalid') {
    throw new ImgFailure([
      'Invalid image size specified. You may use k, M, G, T, P or E suffixes for',
      'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.',
    ]);
  }
  if (!r.ok || r.value > INT64_MAX) throw new ImgFailure('Invalid image size specified. Must be between 0 and 9223372036854775807.');
  if (r.hexWithSuffix) io.err(`${PROG}: warning: Using a multiplier suffix on hex numbers is deprecated: ${text}\n`);
  return r.value;
}

function checkSizeLimit(size: bigint, fmt: ImageFormat, clusterSize: number, extendedL2: boolean, fail: Fail): void {
  if (fmt === 'qcow2') {
    const perL1 = BigInt(clusterSize) * BigInt(clusterSize / (extendedL2 ? 16 : 8));
    const l1 = (size + perL1 - 1n) / perL1;
    if (l1 * 8n > BigInt(QCOW2_MAX_L1_BYTES) || size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw fail("The image size is too large for file format 'qcow2' (try using a larger cluster size)");
    }
  } else if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw fail(`The image size is too large for file format '${fmt}'`);
  }
}

/** The image layer's creation errors in qemu's words where they differ. */
function createErrorText(err: unknown, filename: string, fmt: ImageFormat): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (err instanceof BlockError && err.code === 'IO') {
    const openPrefix = `Could not open '${filename}': `;
    if (msg.startsWith(openPrefix)) return `Could not create '${filename}': ${msg.slice(openPrefix.length)}`;
    if (err.errno === 'EFBIG' || (err.errno === 'EINVAL' && msg.startsWith('Could not resize file'))) return `The image size is too large for file format '${fmt}'`;
  }
  return msg;
}
