import { loadSourceSnapshot, parseSnapshotParam } from './convert-snapshot.js';
import { checkOptionLists, hasHelpOption, printCreateOptionHelp } from './option-help.js';
import { imgSecretBytes } from './objects.js';
import { strerrorOf } from '../../image/errno.js';
import { BlockError } from '../../image/errors.js';
import { isZero } from '../../image/request.js';
import { createImage, isFormat } from '../../image/open.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import type { BlockImage, ImageFormat } from '../../image/types.js';
import { type Fail, formatCreateOptions, parseCreateOptions, str } from './create-opts.js';
import { createPreallocated } from './create.js';
import { openImageOpts } from './image-opts.js';
import { checkConvertBitmaps, copyConvertBitmaps } from './convert-bitmaps.js';
import { chainNames, openForCli, tryOpen, withHint } from './open.js';
import { type ImgIo, ImgFailure, PROG } from './output.js';
import { Progress } from './progress.js';
import { parseQemuSize } from './size-arg.js';
import { chainStatus, type MapEntry } from './status.js';

export interface ConvertArgs {
  format?: string;
  outputFormat?: string;
  backingFile?: string;
  backingFormat?: string;
  options: string[];
  sparseSize?: string;
  compress: boolean;
  /** --bitmaps: the source's persistent bitmaps copied to the target; --skip-broken-bitmaps: inconsistent ones left out. */
  bitmaps?: boolean;
  skipBrokenBitmaps?: boolean;
  /** -C: copy offloading. Nothing here offloads; the data is copied as qemu-img copies it where offloading fails. */
  copyRange?: boolean;
  progress: boolean;
  quiet: boolean;
  /** -U: for the source (the target is written) */
  forceShare?: boolean;
  /** -n: the target exists; it is opened, not created. */
  skipCreate?: boolean;
  /** -l: the internal snapshot of the (first) source to copy. */
  snapshot?: string;
  /** --salvage: unreadable sectors of the source become zeroes (and unknown block status data), with a warning each. */
  salvage?: boolean;
  /** --image-opts: the sources are option strings. */
  imageOpts?: boolean;
  /** --target-image-opts: the target (with -n) is an option string. */
  targetImageOpts?: boolean;
  args: string[];
}

/** Largest piece read and written at once: memory stays bounded whatever the image size (qemu-img's buffer). */
const BUF = 2 << 20;
const MAX_SPARSE = 16 << 20;
const SECTOR = 512;

/** What to do with a run of the source (qemu-img convert's BLK_DATA / BLK_ZERO / BLK_BACKING_FILE). */
type RunKind = 'data' | 'zero' | 'backing';

/** One step of the copy: a run piece small enough to buffer. */
interface Step {
  offset: number;
  length: number;
  kind: RunKind;
}

/** One source image and where its bytes go in the target (qemu-img concatenates several sources). */
interface Source {
  img: BlockImage;
  names: string[];
  start: number;
  size: number;
}

interface Plan {
  sources: Source[];
  /** Bytes copied: the sources' sizes, each but the last rounded up to whole sectors as qemu-img counts them. */
  size: number;
  /** Bytes of zeroes in a row that may stay unallocated; 0 = allocate everything (-S 0). */
  minSparse: number;
  compressed: boolean;
  clusterSize: number;
  targetHasBacking: boolean;
  targetBackingSize: number;
  /** The target reads as zeroes before the copy (new, sparse, no backing file): zero runs need no write. */
  hasZeroInit: boolean;
  /** Created by this convert (not -n). */
  targetIsNew: boolean;
  salvage: boolean;
  /** warn_report (nothing with -q). */
  warn: (text: string) => void;
}

/**
 * `blockemu img convert`: copies SRC (several are concatenated) into a new
 * DST (or, with -n, an existing one) run by run, reading at
 * most BUF bytes at a time, so memory does not grow with the image. Runs that
 * read as zeroes are not written (the new target already reads zeroes) unless
 * the target has a backing file, where they become explicit zeroes; inside
 * data runs, aligned zero blocks of -S bytes (4k) are skipped the same way.
 * With a backing file (-B), runs the source leaves to its own backing file are
 * left to the target's, as qemu-img does (it assumes the two backing files
 * hold the same data). -c writes every cluster compressed.
 */
export async function imgConvert(io: ImgIo, a: ConvertArgs): Promise<number> {
  const progress = new Progress(io, a.progress && !a.quiet, 1.0);
  const opened: BlockImage[] = [];
  try {
    const snapshot = a.snapshot === undefined ? undefined : parseSnapshotParam(a.snapshot);
    const minSparse = parseSparse(a.sparseSize);
    const dash = a.args.find((x) => x.startsWith('-') && x !== '-');
    if (dash !== undefined) throw new ImgFailure(`unrecognized option '${dash}'`, { usage: true });
    if (a.skipBrokenBitmaps && !a.bitmaps) throw new ImgFailure('Use of --skip-broken-bitmaps requires --bitmaps');
    if (a.copyRange && a.compress) throw new ImgFailure('Cannot enable copy offloading when -c is used');
    if (a.copyRange && a.sparseSize !== undefined) throw new ImgFailure('Cannot enable copy offloading when -S is used');
    if (a.copyRange && a.salvage) throw new ImgFailure('Cannot use copy offloading in salvaging mode');
    if (a.targetImageOpts && !a.skipCreate) throw new ImgFailure('--target-image-opts requires use of -n flag');
    if (a.skipCreate && a.options.length > 0) throw new ImgFailure('-o has no effect when skipping image creation');
    checkOptionLists(a.options);
    if (hasHelpOption(a.options)) return printCreateOptionHelp(io, a.args.length >= 2 ? a.args[a.args.length - 1] : undefined, a.outputFormat ?? 'raw');
    if (a.args.length < 2) throw new ImgFailure('Must specify image file name');
    const srcNameList = a.args.slice(0, -1);
    const dstName = a.args[a.args.length - 1]!;
    progress.advance(0);

    // A source is opened with BDRV_O_NO_SHARE: nobody may write it while it is copied.
    const sources: Source[] = [];
    let total = 0;
    for (const name of srcNameList) {
      const img = a.imageOpts
        ? await openImageOpts(io, name, { format: a.format, readOnly: true, forceShare: a.forceShare, flags: { noShare: true } })
        : await openForCli(name, { format: a.format, forceShare: a.forceShare, flags: { noShare: true } });
      opened.push(img);
      sources.push({ img, names: chainNames(img, name), start: total, size: img.size() });
      total += Math.ceil(img.size() / 512) * 512;
    }
    const last = sources[sources.length - 1]!;
    total = last.start + last.size;
    if (snapshot) await loadSourceSnapshot(sources[0]!.img, snapshot, sources.length);
    if (a.bitmaps) {
      if (sources.length > 1) throw new ImgFailure('Copying bitmaps only possible with single source');
      await checkConvertBitmaps(sources[0]!.img, a.skipBrokenBitmaps === true);
    }
    const outFmt = a.outputFormat ?? 'raw';
    if (!a.skipCreate && !isFormat(outFmt)) throw new ImgFailure(`Unknown file format '${outFmt}'`);
    const values = a.skipCreate ? new Map() : parseCreateOptions(outFmt as ImageFormat, a.options, '');
    if (a.backingFile !== undefined && !a.skipCreate) {
      if (outFmt !== 'qcow2') throw new ImgFailure(`Backing file not supported for file format '${outFmt}'`);
      values.set('backing_file', { text: a.backingFile, value: a.backingFile });
    }
    if (a.backingFormat !== undefined && !a.skipCreate) values.set('backing_fmt', { text: a.backingFormat, value: a.backingFormat });
    const backingFile = a.skipCreate ? a.backingFile : str(values.get('backing_file'));
    const backingFmt = str(values.get('backing_fmt'));
    if (sources.length > 1 && backingFile !== undefined) {
      throw new ImgFailure('Having a backing file for the target makes no sense when concatenating multiple input images');
    }
    if (!a.skipCreate && backingFile !== undefined && backingFmt === undefined) throw new ImgFailure('Use of backing file requires explicit backing format');
    if (a.compress && !a.skipCreate && outFmt !== 'qcow2') throw new ImgFailure('Compression not supported for this file format');

    const zeroInit = a.skipCreate ? false : await createTarget(dstName, outFmt as ImageFormat, total, values, backingFile, backingFmt);
    let dst: BlockImage;
    if (a.targetImageOpts) dst = await openImageOpts(io, dstName, { format: a.outputFormat, readOnly: false });
    else {
      if (a.skipCreate && !isFormat(outFmt)) throw new ImgFailure(`Could not open '${dstName}': Unknown driver '${outFmt}'`);
      // A json: or protocol name (-n into a graph: a qcow2 with its data file under blkdebug) opens as nodes.
      // A target created encrypted opens with the key its -o options name (qemu-img passes them to the open).
      const secret = a.skipCreate ? undefined : str(values.get(outFmt === 'luks' ? 'key-secret' : 'encrypt.key-secret'));
      const encryption = secret !== undefined ? { key: () => imgSecretBytes(secret) } : undefined;
      const r = await tryOpen(dstName, { format: outFmt as ImageFormat, readOnly: false, ...(encryption ? { encryption } : {}) });
      if ('inner' in r) throw new ImgFailure(`Could not open '${dstName}': ${r.inner}`);
      dst = r.image;
    }
    opened.push(dst);
    if (a.bitmaps && !(dst instanceof Qcow2Image)) throw new ImgFailure(`Format driver '${dst.format}' does not support bitmaps`);
    if (a.compress && !(dst instanceof Qcow2Image)) throw new ImgFailure('Compression not supported for this file format');
    if (a.skipCreate && Math.ceil(dst.size() / 512) < Math.ceil(total / 512)) throw new ImgFailure('output file is smaller than input file');
    const targetHasBacking = a.skipCreate ? backingFile !== undefined : dst.backing() !== undefined;
    const plan: Plan = {
      sources,
      size: total,
      minSparse,
      compressed: a.compress,
      clusterSize: dst.info().clusterSize ?? 65536,
      targetHasBacking,
      // Only a new target's backing file is looked at (qemu-img's target_backing_sectors).
      targetBackingSize: a.skipCreate ? -1 : (dst.backing()?.size() ?? -1),
      hasZeroInit: zeroInit && minSparse > 0 && !targetHasBacking,
      targetIsNew: !a.skipCreate,
      salvage: a.salvage === true,
      warn: (text) => {
        if (!a.quiet) io.err(`${PROG}: warning: ${text}\n`);
      },
    };
    // qemu-img always walks the source's block status once before copying (to count for progress); a salvaged
    // source says there what it cannot tell, so the walk is made whenever its warnings would show.
    await copy(plan, dst, progress, a.progress && !a.quiet, plan.salvage && !a.quiet);
    await dst.flush();
    if (a.bitmaps) {
      // The bitmaps are copied between nodes: the images are let go first, so their files are not opened twice.
      for (const img of opened.splice(0).reverse()) await img.close();
      await copyConvertBitmaps(io, { name: srcNameList[0]!, format: sources[0]!.img.format }, { name: dstName, format: dst.format }, a.skipBrokenBitmaps === true, plan.warn);
    }
    progress.setAbsolute(100);
    return 0;
  } finally {
    progress.end();
    for (const img of opened.reverse()) await img.close().catch(() => undefined);
  }
}

/**
 * Creates the target as qemu-img's bdrv_create call does, failures worded
 * "<target>: error while converting <fmt>: …". Returns whether the new
 * target reads as zeroes where nothing is written (bdrv_has_zero_init):
 * not a luks image (its driver has no such promise: zeroes are written
 * encrypted), nor an encrypted qcow2 whose clusters were preallocated
 * (they decrypt to noise).
 */
async function createTarget(
  dstName: string,
  outFmt: ImageFormat,
  size: number,
  values: ReturnType<typeof parseCreateOptions>,
  backingFile: string | undefined,
  backingFmt: string | undefined,
): Promise<boolean> {
  const fail: Fail = (msg) => new ImgFailure(`${dstName}: error while converting ${outFmt}: ${msg}`);
  const { opts, preallocation } = formatCreateOptions(outFmt, values, fail);
  opts.size = size;
  if (backingFile !== undefined) {
    if (!isFormat(backingFmt!)) throw fail(`Unknown driver '${backingFmt}'`);
    opts.backingFile = backingFile;
    opts.backingFormat = backingFmt;
  } else if (backingFmt !== undefined) throw fail('Backing format cannot be used without backing file');
  try {
    if (outFmt === 'luks') await createImage(dstName, { ...opts, preallocation });
    else if (preallocation === 'off') await createImage(dstName, opts);
    else await createPreallocated(dstName, opts, preallocation);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const openPrefix = `Could not open '${dstName}': `;
    throw fail(withHint(msg.startsWith(openPrefix) ? `Could not create '${dstName}': ${msg.slice(openPrefix.length)}` : msg, err));
  }
  return outFmt !== 'luks' && !(opts.encryption !== undefined && preallocation !== 'off');
}

function parseSparse(text: string | undefined): number {
  if (text === undefined) return 4096;
  const r = parseQemuSize(text);
  if (!r.ok) {
    throw new ImgFailure([
      'Invalid buffer size for sparse output specified. You may use k, M, G, T, P or E suffixes for',
      'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.',
    ]);
  }
  const v = Number(r.value);
  if (r.value > BigInt(MAX_SPARSE) || v % 512 !== 0) {
    throw new ImgFailure(
      `Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to ${MAX_SPARSE}. Select 0 to disable sparse detection (fully allocates output).`,
    );
  }
  return v;
}

/** How the source's run at `offset` is copied (qemu-img's classification, see imgConvert). */
async function classify(p: Plan, offset: number): Promise<{ kind: RunKind; end: number }> {
  const src = sourceAt(p, offset);
  const srcEnd = src === p.sources[p.sources.length - 1] ? p.size : p.sources[p.sources.indexOf(src) + 1]!.start;
  // The sector-rounding tail past a source's own end reads as zeroes.
  if (offset >= src.start + src.size) return { kind: p.targetHasBacking ? 'backing' : 'zero', end: srcEnd };
  const at = offset - src.start;
  let e: MapEntry | undefined;
  // convert_iteration_sectors: a failed status is asked again of a quarter of the range, down to one sector,
  // which salvage then copies as data; without salvage the convert fails.
  for (let n = Math.ceil((src.size - at) / SECTOR); e === undefined; n = Math.ceil(n / 4)) {
    try {
      e = await chainStatus(src.img, src.names, at, Math.min(n * SECTOR, src.size - at));
    } catch (err) {
      if (!p.salvage) throw new ImgFailure(`error while reading block status at offset ${at}: ${strerrorOf(err)}`);
      if (n === 1) {
        p.warn(`error while reading block status at offset ${at}: ${strerrorOf(err)}`);
        return { kind: 'data', end: Math.min(offset + SECTOR, srcEnd) };
      }
    }
  }
  const end = offset + e.length;
  let kind: RunKind;
  if (p.targetHasBacking) {
    // Only the source's own layer counts: what it leaves to its backing file, the target leaves to its own.
    const topZero = (e.depth === 0 && e.zero) || e.beyondBacking === true;
    if (topZero) kind = p.targetBackingSize >= 0 && offset >= p.targetBackingSize ? 'backing' : 'zero';
    else if (e.depth === 0 && e.data) kind = 'data';
    else kind = 'backing';
  } else {
    kind = e.zero ? 'zero' : 'data';
  }
  return { kind, end };
}

/** The source holding the target's byte `offset`. */
function sourceAt(p: Plan, offset: number): Source {
  let found = p.sources[0]!;
  for (const s of p.sources) if (s.start <= offset) found = s;
  return found;
}

/** Reads `length` bytes of the target's `offset` from the sources holding them (a compressed cluster may span two). */
async function readSource(p: Plan, offset: number, length: number): Promise<Uint8Array> {
  const src = sourceAt(p, offset);
  if (offset + length <= src.start + src.size) return readPiece(p, src, offset - src.start, length);
  const buf = new Uint8Array(length);
  for (const s of p.sources) {
    const from = Math.max(offset, s.start);
    const to = Math.min(offset + length, s.start + s.size);
    if (from < to) buf.set(await readPiece(p, s, from - s.start, to - from), from - offset);
  }
  return buf;
}

/** convert_co_read: with salvage, a failed read is read again sector by sector, and a sector that fails is zeroes. */
async function readPiece(p: Plan, s: Source, offset: number, length: number): Promise<Uint8Array> {
  try {
    return await s.img.read(offset, length);
  } catch (err) {
    if (!p.salvage) throw err;
  }
  const buf = new Uint8Array(length);
  for (let at = 0; at < length; at += SECTOR) {
    const n = Math.min(SECTOR, length - at);
    await s.img.readInto(buf.subarray(at, at + n), offset + at).catch((err: unknown) => {
      buf.fill(0, at, at + n);
      p.warn(`error while reading offset ${offset + at}: ${strerrorOf(err)}`);
    });
  }
  return buf;
}

/**
 * The run pieces in copy order, as qemu-img cuts them: data in pieces of at
 * most BUF bytes from the start of its run; with -c, single whole clusters
 * (a run shorter than a cluster is copied as one data cluster).
 */
async function* steps(p: Plan): AsyncGenerator<Step> {
  let run: { kind: RunKind; end: number } | undefined;
  for (let off = 0; off < p.size; ) {
    if (!run || run.end <= off) run = await classify(p, off);
    let kind = run.kind;
    let n = run.end - off;
    // Compressed output goes one cluster per request, as in qemu-img.
    if (kind === 'data' || (p.minSparse === 0 && kind === 'zero')) n = Math.min(n, p.compressed ? p.clusterSize : BUF);
    if (p.compressed) {
      const cs = p.clusterSize;
      if (n < cs) {
        n = Math.min(cs, p.size - off);
        kind = 'data';
      } else n -= n % cs;
    }
    yield { offset: off, length: n, kind };
    off += n;
  }
}

/** Whether a step counts towards progress (qemu counts what it has to read). */
function counted(p: Plan, s: Step): boolean {
  return s.kind === 'data' || (p.minSparse === 0 && s.kind === 'zero');
}

async function copy(p: Plan, dst: BlockImage, progress: Progress, showProgress: boolean, walkFirst: boolean): Promise<void> {
  // The total to report against needs a first pass over the run structure (no data is read for qcow2).
  let total = 0;
  if (showProgress || walkFirst) for await (const s of steps(p)) if (counted(p, s)) total += s.length;
  const hasZeroInit = p.hasZeroInit;
  let done = 0;
  for await (const s of steps(p)) {
    // qemu-img names the failing piece by its first byte.
    const failed = (what: string) => (err: unknown) => {
      throw new ImgFailure(`error while ${what} at byte ${s.offset}: ${strerrorOf(err)}`);
    };
    if (s.kind === 'data' || (p.minSparse === 0 && s.kind === 'zero')) {
      const buf = s.kind === 'data' ? await readSource(p, s.offset, s.length).catch(failed('reading')) : new Uint8Array(s.length);
      await writeData(p, dst, s.offset, buf, hasZeroInit).catch(failed('writing'));
    } else if (s.kind === 'zero' && !hasZeroInit) {
      await dst.writeZeroes(s.offset, s.length, { mayUnmap: !p.targetHasBacking }).catch(failed('writing'));
    }
    if (counted(p, s)) {
      done += s.length;
      if (total > 0) progress.setAbsolute((100 * (done / 512)) / (total / 512));
    }
  }
}

/** Whether the target's L2 entry for the cluster at `offset` points somewhere (data, compressed data or preallocated zeroes). */
async function storedAt(q: Qcow2Image, offset: number): Promise<boolean> {
  const m = await q.meta.run(() => q.map(offset, q.layout.clusterSize));
  return ((m.entry.hi & 0x00ffffff) | (m.entry.lo & 0xfffffe00)) !== 0;
}

/** Writes a buffer of source data, leaving or zeroing aligned all-zero blocks of minSparse bytes. */
async function writeData(p: Plan, dst: BlockImage, offset: number, buf: Uint8Array, hasZeroInit: boolean): Promise<void> {
  if (p.compressed) {
    // qemu-img skips an all-zero compressed piece only where the target already reads zeroes; elsewhere (-S 0, -n) the zeroes are written compressed.
    if (hasZeroInit && isZero(buf)) return;
    const q = dst as Qcow2Image;
    for (let i = 0; i < buf.length; i += p.clusterSize) {
      if (!p.targetIsNew && (await storedAt(q, offset + i))) {
        // qcow2 takes a compressed cluster only where nothing is stored yet (qcow2_alloc_compressed_cluster_offset's EIO).
        throw new BlockError('IO', 'compressed write to an allocated cluster', { errno: 'EIO' });
      }
      await q.writeCompressed(offset + i, buf.subarray(i, Math.min(buf.length, i + p.clusterSize)));
    }
    return;
  }
  if (p.minSparse === 0) return dst.write(offset, buf);
  const blk = p.minSparse;
  let i = 0;
  while (i < buf.length) {
    // Cut at absolute multiples of the sparse size, so zero blocks line up with the target's.
    const blockEnd = (pos: number) => Math.min(buf.length, Math.floor((offset + pos) / blk) * blk + blk - offset);
    const zero = isZero(buf, i, blockEnd(i));
    let j = blockEnd(i);
    while (j < buf.length && isZero(buf, j, blockEnd(j)) === zero) j = blockEnd(j);
    if (!zero) await dst.write(offset + i, buf.subarray(i, j));
    else if (!hasZeroInit) await dst.writeZeroes(offset + i, j - i, { mayUnmap: !p.targetHasBacking });
    i = j;
  }
}
