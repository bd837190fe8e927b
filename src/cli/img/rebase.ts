import { BlockError } from '../../image/errors.js';
import { strerrorOf } from '../../image/errno.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { allocatedAbove, allocatedHere, findBackingImage } from './chain-status.js';
import type { BlockImage } from '../../image/types.js';
import { parseCacheMode } from '../io-args.js';
import { graphImageName } from './graph-open.js';
import { openImageOpts } from './image-opts.js';
import { ImgGetopt } from './img-getopt.js';
import { pathCombine, probedRawWarning, tryOpen } from './open.js';
import { type ImgIo, ImgFailure, usageError } from './output.js';
import { Progress } from './progress.js';
import { QEMU_FORMATS } from './formats.js';

export const REBASE_USAGE =
  'rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename';

const LONG_OPTIONS = [
  { name: 'help', hasArg: false },
  { name: 'object', hasArg: true },
  { name: 'image-opts', hasArg: false },
  { name: 'force-share', hasArg: false },
];

/** qemu-img's IO_BUF_SIZE: the chunk rebase compares at a time. */
const IO_BUF_SIZE = 2 << 20;


interface RebaseOptions {
  format?: string;
  backing?: string;
  backingFormat?: string;
  unsafe: boolean;
  progress: boolean;
  quiet: boolean;
  forceShare: boolean;
  cache: string;
  srcCache: string;
}

/**
 * `blockemu img rebase` (qemu-img 7.2's img_rebase). Safe mode compares the
 * old backing chain with the new backing file chunk by chunk wherever the
 * image itself allocates nothing, and writes into the image what differs
 * (zeroes where the old chain ends), so the image reads the same before and
 * after; then the header names the new backing file. Unsafe mode (-u) only
 * rewrites the name. `-b ''` removes the backing file.
 */
export async function imgRebase(io: ImgIo, args: readonly string[]): Promise<number> {
  const o: RebaseOptions = { unsafe: false, progress: false, quiet: false, forceShare: false, cache: 'writeback', srcCache: 'writeback' };
  const getopt = new ImgGetopt('rebase', args, ':hf:F:b:upt:T:qU', LONG_OPTIONS, REBASE_USAGE);
  for (const opt of getopt) {
    switch (opt.name) {
      case 'f':
        o.format = opt.value;
        break;
      case 'F':
        o.backingFormat = opt.value;
        break;
      case 'b':
        o.backing = opt.value;
        break;
      case 'u':
        o.unsafe = true;
        break;
      case 'p':
        o.progress = true;
        break;
      case 't':
        o.cache = opt.value;
        break;
      case 'T':
        o.srcCache = opt.value;
        break;
      case 'q':
        o.quiet = true;
        break;
    }
  }
  o.forceShare = getopt.forceShare;
  if (o.quiet) o.progress = false;
  const operands = getopt.operands();
  if (operands.length !== 1) throw usageError('Expecting one image file name');
  if (!o.unsafe && o.backing === undefined) throw usageError('Must specify backing file (-b) or use unsafe mode (-u)');
  const progress = new Progress(io, o.progress, 2.0);
  progress.advance(0, 100);
  try {
    await rebase(io, operands[0]!, o, progress, getopt.imageOpts);
  } finally {
    progress.end();
  }
  return 0;
}

async function rebase(io: ImgIo, operand: string, o: RebaseOptions, progress: Progress, imageOpts: boolean): Promise<void> {
  if (parseCacheMode(o.cache) === undefined) throw new ImgFailure(`Invalid cache option: ${o.cache}`);
  if (parseCacheMode(o.srcCache) === undefined) throw new ImgFailure(`Invalid source cache option: ${o.srcCache}`);
  // Unsafe mode does not open the old backing file: it may be the one that was renamed or moved.
  let image: BlockImage;
  // Unsafe mode writes the header only: an image's persistent bitmaps stay true to its data, so such an image may be opened.
  if (imageOpts) image = await openImageOpts(io, operand, { format: o.format, readOnly: false, openBacking: !o.unsafe, persistentBitmaps: o.unsafe });
  else {
    const r = await tryOpen(operand, { format: o.format, readOnly: false, backing: !o.unsafe, persistentBitmaps: o.unsafe });
    if ('inner' in r) throw new ImgFailure(`Could not open '${operand}': ${r.inner}`);
    image = r.image;
  }
  // The new backing file's name is taken relative to the image's own (bs->filename: an option string's file).
  const filename = imageOpts ? (graphImageName(image) ?? image.filename) : operand;
  let newBacking: BlockImage | undefined;
  try {
    if (o.format === undefined && !imageOpts && image.format === 'raw') io.err(probedRawWarning(filename));
    if (o.backingFormat !== undefined && !QEMU_FORMATS.has(o.backingFormat)) throw new ImgFailure(`Invalid format name: '${o.backingFormat}'`);
    if (!o.unsafe) {
      const target = o.backing!;
      let prefix: BlockImage | undefined;
      if (target !== '') {
        const path = pathCombine(filename, target);
        prefix = await findBackingImage(image, target);
        if (!prefix) {
          const nb = await tryOpen(path, { format: o.backingFormat, readOnly: true, forceShare: o.forceShare });
          if ('inner' in nb) throw new ImgFailure(`Could not open new backing file '${target}': ${nb.inner}`);
          newBacking = nb.image;
        }
      }
      await copyDifferences(image, newBacking ?? prefix, prefix, progress);
    }
    await changeBacking(image, o.backing, o.backingFormat);
    progress.setAbsolute(100);
  } finally {
    await newBacking?.close();
    await image.close();
  }
}

/** Reads `n` bytes of `img` at `offset`, zeroes past its end. */
async function readPadded(img: BlockImage | undefined, offset: number, n: number, what: string): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  if (!img || offset >= img.size()) return buf;
  try {
    buf.set(await img.read(offset, Math.min(n, img.size() - offset)));
  } catch {
    throw new ImgFailure(`error while reading from ${what} backing file`);
  }
  return buf;
}

/**
 * The safe part of img_rebase: wherever the image falls through to its
 * backing file, what the old chain and the new backing file return is
 * compared sector by sector and the old bytes written where they differ.
 */
async function copyDifferences(image: BlockImage, newBacking: BlockImage | undefined, prefix: BlockImage | undefined, progress: Progress): Promise<void> {
  const size = image.size();
  const old = image.backing();
  const oldSize = old?.size() ?? 0;
  const newSize = newBacking?.size() ?? 0;
  const step = size !== 0 ? Math.fround(100 / Math.floor(size / Math.min(size, IO_BUF_SIZE))) : 0;
  for (let offset = 0; offset < size; ) {
    let n = Math.min(IO_BUF_SIZE, size - offset);
    let status;
    try {
      status = await allocatedHere(image, offset, n);
    } catch (err) {
      throw new ImgFailure(`error while reading image metadata: ${strerrorOf(err)}`);
    }
    n = status.n;
    if (status.allocated) {
      offset += n;
      continue;
    }
    if (prefix && old) {
      const above = await allocatedAbove(old, prefix, offset, n);
      if (!above.allocated && above.n > 0) {
        offset += above.n;
        continue;
      }
      // n 0: past the end of an image between, which read zeroes there: compared below.
      if (above.n > 0) n = above.n;
    }
    const oldIsZero = offset >= oldSize;
    if (!oldIsZero) n = Math.min(n, oldSize - offset);
    if (newBacking && offset < newSize) n = Math.min(n, newSize - offset);
    const bufOld = oldIsZero ? new Uint8Array(n) : await readPadded(old, offset, n, 'old');
    const bufNew = await readPadded(offset < newSize ? newBacking : undefined, offset, n, 'new');
    for (let done = 0; done < n; ) {
      const { differ, len } = compareSectors(bufOld, bufNew, done, n);
      if (differ) {
        try {
          if (oldIsZero) await image.writeZeroes(offset + done, len);
          else await image.write(offset + done, bufOld.subarray(done, done + len));
        } catch (err) {
          throw new ImgFailure(`Error while writing to COW image: ${strerrorOf(err)}`);
        }
      }
      done += len;
    }
    progress.advance(step, 100);
    offset += n;
  }
}

/** compare_buffers: whether the first sector differs, and how far (in whole sectors) that stays so. */
function compareSectors(a: Uint8Array, b: Uint8Array, from: number, end: number): { differ: boolean; len: number } {
  const sector = (at: number) => {
    const stop = Math.min(end, at + 512);
    return !Buffer.from(a.buffer, a.byteOffset + at, stop - at).equals(Buffer.from(b.buffer, b.byteOffset + at, stop - at));
  };
  const differ = sector(from);
  let i = Math.min(end, from + 512);
  while (i < end && sector(i) === differ) i = Math.min(end, i + 512);
  return { differ, len: i - from };
}

/** bdrv_change_backing_file with require=true, and qemu-img's words for its failures. */
async function changeBacking(image: BlockImage, backing: string | undefined, fmt: string | undefined): Promise<void> {
  const name = backing !== undefined && backing !== '' ? backing : undefined;
  const fail = (why: string) => new ImgFailure(`Could not change the backing file to '${backing ?? '(null)'}': ${why}`);
  if (fmt !== undefined && name === undefined) throw fail('Invalid argument');
  if (name !== undefined && fmt === undefined) throw fail('backing format must be specified');
  if (!(image instanceof Qcow2Image)) throw fail('Operation not supported');
  try {
    await image.changeBackingFile(name, fmt);
  } catch (err) {
    if (err instanceof BlockError && err.errno === 'ENOSPC') throw fail('No space left in the file header');
    throw fail(strerrorOf(err));
  }
}
