import { setTimeout as sleep } from 'node:timers/promises';
import { openImage } from '../../image/open.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { strerrorOf } from '../../image/errno.js';
import type { BlockImage, ImageFormat } from '../../image/types.js';
import { parseCacheMode } from '../io-args.js';
import { allocatedAbove, findBackingImage } from './chain-status.js';
import { openImageOpts } from './image-opts.js';
import { ImgGetopt } from './img-getopt.js';
import { parseImageOpts } from '../../blockdev/qemu-io/qemu-opts.js';
import { graphImageName, graphOpenedName, needsGraph, openProtocolBacking, openThroughGraph } from './graph-open.js';
import { probedRawWarning, tryOpen } from './open.js';
import { type ImgIo, ImgFailure, usageError } from './output.js';
import { Progress } from './progress.js';
import { INT64_MAX, parseQemuSize } from './size-arg.js';

export const COMMIT_USAGE = 'commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename';

const LONG_OPTIONS = [
  { name: 'help', hasArg: false },
  { name: 'object', hasArg: true },
  { name: 'image-opts', hasArg: false },
];

/** The copy's chunk: what is read and written at a time. */
const CHUNK = 1 << 20;

interface CommitOptions {
  format?: string;
  cache: string;
  base?: string;
  drop: boolean;
  progress: boolean;
  quiet: boolean;
  /** Bytes per second, 0 for no limit. */
  rate: number;
}

/** cvtnum("rate limit", …) and its messages. */
function parseRate(text: string): number {
  const r = parseQemuSize(text);
  if (r.ok && r.value <= INT64_MAX) return Number(r.value);
  if (r.ok || r.reason === 'range') throw new ImgFailure(`Invalid rate limit specified. Must be between 0 and ${INT64_MAX}.`);
  throw new ImgFailure(['Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for', 'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.']);
}

/**
 * `blockemu img commit` (qemu-img 7.2's img_commit): what the image and the
 * images between it and the base (-b, default its backing file) hold is
 * written into the base, grown first if it is shorter; then, unless -d or
 * -b, the image is emptied so that it reads through to the base again.
 * QEMU runs an active-commit job for this; the copy here is the same
 * outcome (allocated data copied, zeroes written as zeroes), done in order.
 */
export async function imgCommit(io: ImgIo, args: readonly string[]): Promise<number> {
  const o: CommitOptions = { cache: 'writeback', drop: false, progress: false, quiet: false, rate: 0 };
  const getopt = new ImgGetopt('commit', args, ':f:ht:b:dpqr:', LONG_OPTIONS, COMMIT_USAGE);
  for (const opt of getopt) {
    switch (opt.name) {
      case 'f':
        o.format = opt.value;
        break;
      case 't':
        o.cache = opt.value;
        break;
      case 'b':
        o.base = opt.value;
        // -b implies -d
        o.drop = true;
        break;
      case 'd':
        o.drop = true;
        break;
      case 'p':
        o.progress = true;
        break;
      case 'q':
        o.quiet = true;
        break;
      case 'r':
        o.rate = parseRate(opt.value);
        break;
    }
  }
  if (o.quiet) o.progress = false;
  const operands = getopt.operands();
  if (operands.length !== 1) throw usageError('Expecting one image file name');
  const filename = operands[0]!;
  if (parseCacheMode(o.cache) === undefined) throw new ImgFailure(`Invalid cache option: ${o.cache}`);
  const plan = await planCommit(io, filename, o, getopt.imageOpts);
  const progress = new Progress(io, o.progress, 1);
  progress.advance(0, 100);
  try {
    if ('error' in plan) throw new ImgFailure(plan.error);
    await commit(plan.chain, o, progress);
    progress.setAbsolute(100);
  } finally {
    progress.end();
  }
  if (!o.quiet) io.out('Image committed.\n');
  return 0;
}

/** One image of the chain to commit, top first, base last. */
interface Link {
  path: string;
  format: ImageFormat;
  /** When its name or options open a node graph (blkdebug:…, json:…, --image-opts; a backing file named so): how to open it so again, over `below` (the base: over its own backing file). */
  reopen?: (below: BlockImage | undefined, readOnly: boolean) => Promise<BlockImage>;
}

/** Opens the image as qemu-img does (its messages for a failed open), and names the chain from it down to the base. */
async function planCommit(io: ImgIo, filename: string, o: CommitOptions, imageOpts: boolean): Promise<{ chain: Link[] } | { error: string }> {
  let top: BlockImage;
  if (imageOpts) top = await openImageOpts(io, filename, { format: o.format, readOnly: false });
  else {
    const r = await tryOpen(filename, { format: o.format, readOnly: false });
    if ('inner' in r) throw new ImgFailure(`Could not open '${filename}': ${r.inner}`);
    top = r.image;
  }
  try {
    if (o.format === undefined && top.format === 'raw') io.err(probedRawWarning(filename));
    const base = o.base !== undefined ? await findBackingImage(top, o.base) : top.backing();
    if (!base) return { error: o.base !== undefined ? `Did not find '${o.base}' in the backing chain of '${filename}'` : 'Image does not have a backing file' };
    const chain: Link[] = [];
    for (let cur: BlockImage | undefined = top; cur; cur = cur === base ? undefined : cur.backing()) {
      const link: Link = { path: cur.filename, format: cur.format };
      const name = graphOpenedName(cur);
      if (name !== undefined) link.reopen = graphReopener(name, undefined, cur.format);
      chain.push(link);
    }
    if (imageOpts) chain[0]!.reopen = graphReopener(undefined, parseImageOpts(filename, 'file').opts, top.format);
    else if (needsGraph(filename)) chain[0]!.reopen = graphReopener(filename, undefined, top.format);
    return { chain };
  } finally {
    await top.close();
  }
}

/** Opens a link named by a graph name or options again, over the image below it. */
function graphReopener(name: string | undefined, options: ReadonlyMap<string, string> | undefined, format: ImageFormat): NonNullable<Link['reopen']> {
  return (below, readOnly) =>
    openThroughGraph(name, { format, readOnly, openBacking: true, ...(below ? { backingImage: below } : {}), ...(options ? { options } : {}), flags: { readOnly } });
}

/**
 * Opens the chain again with the base writable under the images above it
 * (a backing file is otherwise read-only), copies, and empties the top.
 */
async function commit(chain: Link[], o: CommitOptions, progress: Progress): Promise<void> {
  const baseLink = chain[chain.length - 1]!;
  const base = baseLink.reopen ? await baseLink.reopen(undefined, false) : await openImage(baseLink.path, { format: baseLink.format, readOnly: false, openProtocolImage: openProtocolBacking });
  let below: BlockImage = base;
  let top: BlockImage | undefined;
  try {
    const openBackingImage = (p: string, f: ImageFormat | undefined, depth: number) => openImage(p, { format: f, readOnly: true, depth, openProtocolImage: openProtocolBacking });
    for (let i = chain.length - 2; i >= 0; i--) {
      const link = chain[i]!;
      below = link.reopen ? await link.reopen(below, i !== 0) : await Qcow2Image.open(link.path, { readOnly: i !== 0, backingImage: below, depth: i, openBackingImage });
    }
    top = below;
    await copyDown(top, base, o.rate, progress);
    await base.flush();
    if (!o.drop && top instanceof Qcow2Image) {
      // bdrv_make_empty's error names the node as QEMU names it (bs->filename).
      const emptied = top;
      await emptied.makeEmpty().catch((err: unknown) => {
        throw new ImgFailure(`Failed to empty ${graphImageName(emptied) ?? emptied.filename}: ${strerrorOf(err)}`);
      });
    }
  } finally {
    // Closing the top closes the chain it took over, the base included.
    await (top ?? below).close();
  }
}

async function copyDown(top: BlockImage, base: BlockImage, rate: number, progress: Progress): Promise<void> {
  const size = top.size();
  // The base grows to the top's size (mirror_run for an active commit).
  if (base.size() < size) await base.resize(size);
  const started = Date.now();
  let copied = 0;
  for (let offset = 0; offset < size; ) {
    let n = Math.min(CHUNK, size - offset);
    const above = await allocatedAbove(top, base, offset, n);
    n = above.n > 0 ? above.n : n;
    if (above.allocated) {
      const e = await top.blockStatus(offset, n);
      n = Math.min(n, e.length);
      try {
        if (e.zero) await base.writeZeroes(offset, n, { mayUnmap: true });
        else await base.write(offset, await top.read(offset, n));
      } catch (err) {
        // common_block_job_cb: the job's error, as its errno.
        throw new ImgFailure(`Block job failed: ${strerrorOf(err)}`);
      }
      copied += n;
      if (rate > 0) {
        const due = started + (copied / rate) * 1000;
        if (due > Date.now()) await sleep(due - Date.now());
      }
    }
    offset += n;
    progress.setAbsolute(Math.fround((offset / size) * 100));
  }
}
