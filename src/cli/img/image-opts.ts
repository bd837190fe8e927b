import { checkQcow2RuntimeOptions } from '../../blockdev/drivers/qcow2.js';
import { QCOW2_OPTIONS } from '../../blockdev/drivers/qcow2-options.js';
import type { Options } from '../../blockdev/options.js';
import { parseImageOpts } from '../../blockdev/qemu-io/qemu-opts.js';
import { openImage } from '../../image/open.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import type { BlockImage } from '../../image/types.js';
import type { ToolOpenFlags } from '../../image/tool-perms.js';
import { openThroughGraph } from './graph-open.js';
import { nest } from '../../qmp/commands/drive.js';
import { innerOpenMessage, withHint } from './open.js';
import { type ImgIo, ImgFailure, PROG } from './output.js';

/** What `blockemu img` opens for an --image-opts operand. */
export interface ImageOptsTarget {
  filename: string;
  format?: string;
  forceShare: boolean;
}

/** qcow2's runtime options (cache sizes, overlap checks, …): checked against the image as qcow2_update_options does, else without effect. */
const QCOW2_RUNTIME = new Set(QCOW2_OPTIONS);

const FORMAT_KEYS = new Set(['driver', 'node-name', 'read-only', 'force-share', 'cache.direct', 'cache.no-flush', 'discard', 'auto-read-only', 'detect-zeroes']);
const FILE_KEYS = new Set(['driver', 'filename', 'aio', 'locking', 'node-name', 'read-only', 'force-share', 'cache.direct', 'cache.no-flush', 'discard']);

/**
 * The flat options as bdrv_open checks a format node over a file: its own
 * keys, "file.*" for the protocol child, the rest refused in
 * bdrv_open_inherit's words. Returns the file name, the format and
 * force-share; throws with the inner message.
 */
function planImageOpts(opts: ReadonlyMap<string, string>): { filename: string; format?: string; forceShare?: boolean } {
  const driver = opts.get('driver');
  if (driver !== undefined && driver !== 'raw' && driver !== 'qcow2' && driver !== 'luks' && driver !== 'file') throw new Error(`Unknown driver '${driver}'`);
  const fileDriver = opts.get('file.driver');
  if (fileDriver !== undefined && fileDriver !== 'file') throw new Error(`Unknown driver '${fileDriver}'`);
  // driver=file is the protocol node itself: its keys sit at the top level.
  const protocolOnly = driver === 'file';
  const filename = protocolOnly ? opts.get('filename') : opts.get('file.filename');
  if (opts.has('file') && !opts.has('file.filename')) {
    const ref = opts.get('file')!;
    throw new Error(`Cannot find device='${ref}' nor node-name='${ref}'`);
  }
  for (const key of opts.keys()) {
    // qcow2's data file child (the driver, if not named, is probed as qcow2 from the file).
    if (key.startsWith('data-file.') && (driver === undefined || driver === 'qcow2')) continue;
    if (key.startsWith('file.') && !protocolOnly) {
      if (!FILE_KEYS.has(key.slice(5))) throw new Error(`Block protocol 'file' doesn't support the option '${key.slice(5)}'`);
    } else if (!(protocolOnly ? FILE_KEYS : FORMAT_KEYS).has(key) && !(driver === 'qcow2' && (QCOW2_RUNTIME.has(key) || key.startsWith('encrypt.'))) && !(driver === 'luks' && key === 'key-secret')) {
      if (protocolOnly) throw new Error(`Block protocol 'file' doesn't support the option '${key}'`);
      if (driver === undefined) throw new Error('Must specify either driver or file');
      throw new Error(`Block format '${driver}' does not support the option '${key}'`);
    }
  }
  if (filename === undefined) {
    if (driver === undefined || protocolOnly) throw new Error("The 'file' block driver requires a file name");
    throw new Error('A block device must be specified for "file"');
  }
  const share = opts.get('force-share') ?? (protocolOnly ? undefined : opts.get('file.force-share'));
  let forceShare: boolean | undefined;
  if (share !== undefined) {
    if (['on', 'yes', 'true', 'y'].includes(share)) forceShare = true;
    else if (['off', 'no', 'false', 'n'].includes(share)) forceShare = false;
    else throw new Error("Parameter 'force-share' expects 'on' or 'off'");
  }
  return { filename, format: protocolOnly ? 'raw' : driver, ...(forceShare !== undefined ? { forceShare } : {}) };
}

/** The keys an --image-opts string may set for `blockemu img`: a format node over a file, nothing that changes how it is opened. */
const TAKEN = new Set(['driver', 'file.driver', 'file.filename', 'force-share', 'file.force-share']);

/**
 * qemu-img's img_open for --image-opts: the operand is a QemuOpts string
 * naming the node to open (-f may not be given too; -U adds force-share=on,
 * and a force-share=off in the string conflicts with it). Errors are
 * qemu-img's, prefixed "Could not open '<the string>': " as it prefixes
 * them. blockemu takes the format and the file's name; options that would
 * change how the image is opened (cache modes, driver options) are refused
 * rather than ignored.
 */
export async function imageOptsTarget(io: ImgIo, optstr: string, format: string | undefined, forceShare: boolean): Promise<ImageOptsTarget> {
  if (format !== undefined) throw new ImgFailure('--image-opts and --format are mutually exclusive');
  const { opts, warnings } = parseImageOpts(optstr, 'file');
  for (const w of warnings) io.err(`${PROG}: ${w}\n`);
  const share = opts.get('force-share');
  if (forceShare && share !== undefined && share !== 'on') throw new ImgFailure('--force-share/-U conflicts with image options');
  let plan;
  try {
    plan = planImageOpts(opts);
  } catch (err) {
    throw new ImgFailure(`Could not open '${optstr}': ${err instanceof Error ? err.message : String(err)}`);
  }
  if (opts.get('driver') === 'file') throw new ImgFailure(`Could not open '${optstr}': blockemu img opens a format node (driver=raw or qcow2), not a protocol node`);
  // A data file child makes it a tree of nodes, and a key opens an encrypted image: opened as the json: name of the same options, through the node graph.
  if ([...opts.keys()].some((k) => k.startsWith('data-file.') || k.startsWith('encrypt.') || k === 'key-secret')) return { filename: `json:${JSON.stringify(nest(opts))}`, forceShare: forceShare || plan.forceShare === true };
  const runtime: Options = {};
  for (const [key, value] of opts) {
    if (plan.format === 'qcow2' && QCOW2_RUNTIME.has(key)) runtime[key] = value;
    else if (!TAKEN.has(key)) throw new ImgFailure(`Could not open '${optstr}': blockemu img does not apply the option '${key}' of --image-opts`);
  }
  if (Object.keys(runtime).length > 0) await checkRuntimeOptions(plan.filename, runtime, optstr);
  return { filename: plan.filename, format: plan.format, forceShare: forceShare || plan.forceShare === true };
}

/** The image's header read (nothing locked, no backing file) to check qcow2 runtime options against it, as its open would. */
async function checkRuntimeOptions(filename: string, runtime: Options, optstr: string): Promise<void> {
  let image;
  try {
    image = await openImage(filename, { format: 'qcow2', readOnly: true, openBacking: false });
  } catch {
    // The real open says what is wrong with the file.
    return;
  }
  try {
    if (image instanceof Qcow2Image) checkQcow2RuntimeOptions(image, runtime);
  } catch (err) {
    throw new ImgFailure(`Could not open '${optstr}': ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await image.close();
  }
}

/**
 * img_open for an --image-opts operand, opened as bdrv_open opens the
 * options (graph-open.ts): any driver the graph knows, blkdebug above or
 * below the format included. -f may not be given too; -U adds
 * force-share=on, which the string may not contradict.
 */
export async function openImageOpts(
  io: ImgIo,
  optstr: string,
  o: { format?: string; readOnly: boolean; openBacking?: boolean; forceShare?: boolean; persistentBitmaps?: boolean; flags?: Omit<ToolOpenFlags, 'readOnly' | 'forceShare'> },
): Promise<BlockImage> {
  if (o.format !== undefined) throw new ImgFailure('--image-opts and --format are mutually exclusive');
  const { opts, warnings } = parseImageOpts(optstr, 'file');
  for (const w of warnings) io.err(`${PROG}: ${w}\n`);
  const share = opts.get('force-share');
  if (o.forceShare && share !== undefined && share !== 'on') throw new ImgFailure('--force-share/-U conflicts with image options');
  try {
    return await openThroughGraph(undefined, { options: opts, readOnly: o.readOnly, openBacking: o.openBacking ?? true, persistentBitmaps: o.persistentBitmaps, flags: { ...o.flags, readOnly: o.readOnly, forceShare: o.forceShare === true || share === 'on' } });
  } catch (err) {
    throw new ImgFailure(`Could not open '${optstr}': ${withHint(innerOpenMessage(err, optstr), err)}`);
  }
}
