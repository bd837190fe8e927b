/** Opening images for `blockemu img` with qemu-img's error texts and names. */
import type { EncryptionOptions } from '../../image/qcow2/crypto/open.js';
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { BlockError, errorHint } from '../../image/errors.js';
import { isFormat, type OpenLocks, openImage } from '../../image/open.js';
import { checkForceShare, topLockSpec, type ToolOpenFlags } from '../../image/tool-perms.js';
import type { BlockImage, ImageFormat } from '../../image/types.js';
import { needsGraph, openProtocolBacking, openThroughGraph } from './graph-open.js';
import { ImgFailure } from './output.js';
import { pathCombine } from './backing-name.js';

export { fullBackingName, pathCombine } from './backing-name.js';

/** The names qemu-img prints for `img` and each image under it. */
export function chainNames(img: BlockImage, topName: string): string[] {
  const names = [topName];
  for (let cur: BlockImage | undefined = img; cur; cur = cur.backing()) {
    const b = cur.info().backingFilename;
    if (b === undefined || !cur.backing()) break;
    names.push(pathCombine(names[names.length - 1]!, b));
  }
  return names;
}

/**
 * qemu-img's "inner" text for a failed open. Errors from opening the host
 * file already read "Could not open 'x': No such file or directory", which is
 * exactly what qemu's file layer says, so qemu-img's own "Could not open 'x': "
 * goes in front of it (hence the doubled prefix qemu-img prints). Format
 * errors from our drivers carry the same prefix, but QEMU's format drivers do
 * not, so it is dropped there.
 */
export function innerOpenMessage(err: unknown, path: string): string {
  const msg = err instanceof Error ? err.message : String(err);
  const prefix = `Could not open '${path}': `;
  const fromHostFile = err instanceof BlockError && err.code === 'IO' && err.errno !== undefined;
  if (!fromHostFile && msg.startsWith(prefix)) return msg.slice(prefix.length);
  return msg;
}

export { errorHint } from '../../image/errors.js';

/** `text` followed by the error's hint on its own line, as QEMU's error_report_err prints it. */
export function withHint(text: string, err: unknown): string {
  const hint = errorHint(err);
  return hint === undefined ? text : `${text}\n${hint}`;
}

/** What QEMU prints when it guessed raw for an image opened for writing without a format. */
export function probedRawWarning(file: string): string {
  return (
    `WARNING: Image format was not specified for '${file}' and probing guessed raw.\n` +
    '         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n' +
    "         Specify the 'raw' format explicitly to remove the restrictions.\n"
  );
}

export interface CliOpenOptions {
  format?: string;
  readOnly?: boolean;
  /** Open the backing chain (default true; info reads only the one image). */
  backing?: boolean;
  /** qcow2: the command keeps the persistent bitmaps up to date itself (resize does). */
  persistentBitmaps?: boolean;
  /** -U: share everything (force-share=on); refused for a writer, as QEMU refuses it. */
  forceShare?: boolean;
  /** The open flags besides read-only that decide the image locks (qemu-img info's BDRV_O_NO_IO, convert's BDRV_O_NO_SHARE, …). */
  flags?: Omit<ToolOpenFlags, 'readOnly' | 'forceShare'>;
  /** The name a failed open is reported under when it is not `name` (an --image-opts string). */
  displayName?: string;
  /** An encrypted qcow2's encrypt.* (convert opens the target it created with its -o key-secret). */
  encryption?: EncryptionOptions;
}

/** The image locks a tool's open with these options takes: tool-perms.ts's rules for the BlockBackend QEMU opens. */
export function cliLocks(opts: CliOpenOptions): OpenLocks {
  const spec = topLockSpec({ ...opts.flags, readOnly: opts.readOnly ?? true, forceShare: opts.forceShare });
  return { node: spec.node, noIo: spec.noIo, forceShare: spec.forceShare };
}

/** Opens `name` or fails with qemu-img's "Could not open 'name': …". */
export async function openForCli(name: string, opts: CliOpenOptions = {}): Promise<BlockImage> {
  const r = await tryOpen(name, opts);
  if ('inner' in r) throw new ImgFailure(`Could not open '${opts.displayName ?? name}': ${r.inner}`);
  return r.image;
}

/** Opens `name`; on failure gives qemu's inner message (callers word the rest differently). */
export async function tryOpen(name: string, opts: CliOpenOptions = {}): Promise<{ image: BlockImage } | { inner: string }> {
  if (opts.format !== undefined && !isFormat(opts.format)) return { inner: `Unknown driver '${opts.format}'` };
  const format = opts.format;
  const readOnly = opts.readOnly ?? true;
  try {
    // bdrv_open_common refuses force-share for a writer before the file is looked at.
    checkForceShare(readOnly, opts.forceShare);
  } catch (err) {
    return { inner: (err as Error).message };
  }
  if (needsGraph(name)) {
    try {
      const flags = { ...opts.flags, readOnly, forceShare: opts.forceShare };
      return { image: await openThroughGraph(name, { format, readOnly, openBacking: opts.backing ?? true, persistentBitmaps: opts.persistentBitmaps, flags }) };
    } catch (err) {
      return { inner: withHint(innerOpenMessage(err, name), err) };
    }
  }
  // QEMU's file driver refuses directories before reading anything: opened for writing, open(2) itself fails (EISDIR); read-only, its fstat check does.
  const st = await stat(name).catch(() => undefined);
  if (st?.isDirectory()) return { inner: readOnly ? `'file' driver requires '${name}' to be a regular file` : `Could not open '${name}': Is a directory` };
  try {
    return {
      image: await openImage(name, {
        format,
        readOnly,
        openBacking: opts.backing ?? true,
        persistentBitmaps: opts.persistentBitmaps,
        locks: cliLocks(opts),
        openProtocolImage: openProtocolBacking,
        ...(opts.encryption ? { encryption: opts.encryption } : {}),
      }),
    };
  } catch (err) {
    return { inner: await openFailureText(err, name, format) };
  }
}

/** qemu-img's inner text for a failed open of `name`, with the lock hint and backing files named as qemu-img names them. */
export async function openFailureText(err: unknown, name: string, format: ImageFormat | undefined): Promise<string> {
  const inner = withHint(innerOpenMessage(err, name), err);
  return inner.includes('Could not open backing file') ? renameBackingPaths(inner, name, format) : inner;
}

/**
 * The image layer names a backing file it could not open by its absolute
 * path; qemu-img names it by path_combine. Walk the chain header by header
 * (without opening backing files) to learn the stored names and swap them in.
 */
async function renameBackingPaths(message: string, topName: string, format: ImageFormat | undefined): Promise<string> {
  let msg = message;
  let name = topName;
  let fmt: ImageFormat | undefined = format;
  for (let depth = 0; depth < 64; depth++) {
    let img: BlockImage;
    try {
      img = await openImage(name, { format: fmt, readOnly: true, openBacking: false });
    } catch {
      break;
    }
    const info = img.info();
    await img.close();
    if (info.backingFilename === undefined) break;
    const stored = info.backingFilename;
    const absolute = isAbsolute(stored) ? stored : resolve(dirname(name), stored);
    const shown = pathCombine(name, stored);
    // Quoted in messages, bracketed in the lock hint.
    msg = msg.split(`'${absolute}'`).join(`'${shown}'`).split(`[${absolute}]`).join(`[${shown}]`);
    name = shown;
    fmt = info.backingFormat !== undefined && isFormat(info.backingFormat) ? info.backingFormat : undefined;
  }
  return msg;
}
