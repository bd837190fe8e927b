import { parseImageOpts, planImageOpts } from '../io-image-opts.js';
import { type ImgIo, ImgFailure, PROG } from './output.js';

/** What `blockemu img` opens for an --image-opts operand. */
export interface ImageOptsTarget {
  filename: string;
  format?: string;
  forceShare: boolean;
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
export function imageOptsTarget(io: ImgIo, optstr: string, format: string | undefined, forceShare: boolean): ImageOptsTarget {
  if (format !== undefined) throw new ImgFailure('--image-opts and --format are mutually exclusive');
  const { opts, warnings } = parseImageOpts(optstr);
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
  for (const key of opts.keys()) {
    if (!TAKEN.has(key)) throw new ImgFailure(`Could not open '${optstr}': blockemu img does not apply the option '${key}' of --image-opts`);
  }
  return { filename: plan.filename, format: plan.format, forceShare: forceShare || plan.forceShare === true };
}
