import { strerrorOf } from '../../image/errno.js';
import type { BlockImage } from '../../image/types.js';
import { openImageOpts } from './image-opts.js';
import { chainNames, openForCli } from './open.js';
import { type ImgIo, ImgFailure, usageError } from './output.js';
import { percentOf, Progress } from './progress.js';
import { type MapEntry, StatusCursor } from './status.js';

export interface CompareArgs {
  format1?: string;
  format2?: string;
  progress: boolean;
  quiet: boolean;
  strict: boolean;
  /** -U */
  forceShare?: boolean;
  /** --image-opts: both operands are option strings. */
  imageOpts?: boolean;
  args: string[];
}

/** Bytes compared per read: bounds memory whatever the image size (qemu-img's IO_BUF_SIZE). */
const IO_BUF = 2 << 20;
const SECTOR = 512;

/** One image being compared, with its status answers reused until the walk passes them. */
interface Side {
  img: BlockImage;
  status: StatusCursor;
  /** As typed: qemu-img's messages name the image so. */
  name: string;
}

/** bdrv_block_status_above failing: exit code 3, the image named. */
async function statusOf(s: Side, offset: number, length: number): Promise<MapEntry> {
  try {
    return await s.status.at(offset, length);
  } catch {
    throw new ImgFailure(`Sector allocation test failed for ${s.name}`, { exitCode: 3 });
  }
}

/** blk_pread failing: exit code 4, the offset and the reason. */
async function readOf(s: Side, offset: number, length: number): Promise<Uint8Array> {
  try {
    return await s.img.read(offset, length);
  } catch (err) {
    throw new ImgFailure(`Error while reading offset ${offset} of ${s.name}: ${strerrorOf(err)}`, { exitCode: 4 });
  }
}

/**
 * `blockemu img compare`: qemu-img compare's walk, messages and exit codes
 * (0 identical, 1 different, 2 error). Runs that read as zeroes in both images
 * are skipped without reading; the rest is read in bounded chunks. A size
 * difference is a warning when the larger image's extra tail reads as zeroes
 * (an error in strict mode, which also fails on any allocation difference).
 * A mismatch is reported at the start of the first differing 512-byte sector.
 */
export async function imgCompare(io: ImgIo, a: CompareArgs): Promise<number> {
  const dash = a.args.find((x) => x.startsWith('-') && x !== '-');
  if (dash !== undefined) throw usageError(`unrecognized option '${dash}'`);
  if (a.args.length !== 2) throw usageError('Expecting two image file names');
  const say = (s: string) => {
    if (!a.quiet) io.out(s);
  };
  const progress = new Progress(io, a.progress && !a.quiet, 2.0);
  const opened: BlockImage[] = [];
  try {
    const sides: Side[] = [];
    for (const [name, format] of [[a.args[0]!, a.format1], [a.args[1]!, a.format2]] as const) {
      const opening = a.imageOpts ? openImageOpts(io, name, { format, readOnly: true, forceShare: a.forceShare }) : openForCli(name, { format, forceShare: a.forceShare });
      const img = await opening.catch((e: unknown) => {
        throw e instanceof ImgFailure ? e.withExitCode(2) : e;
      });
      opened.push(img);
      sides.push({ img, name, status: new StatusCursor(img, chainNames(img, name)) });
    }
    const [s1, s2] = sides as [Side, Side];
    const size1 = s1.img.size();
    const size2 = s2.img.size();
    progress.advance(0);
    if (a.strict && size1 !== size2) {
      say('Strict mode: Image size mismatch!\n');
      return 1;
    }
    const common = Math.min(size1, size2);
    const base = Math.max(size1, size2);
    for (let off = 0; off < common; ) {
      const e1 = await statusOf(s1, off, size1 - off);
      const e2 = await statusOf(s2, off, size2 - off);
      let chunk = Math.min(e1.length, e2.length, common - off);
      if (a.strict && strictFlags(e1, size1) !== strictFlags(e2, size2)) {
        say(`Strict mode: Offset ${off} block status mismatch!\n`);
        return 1;
      }
      const a1 = allocated(e1);
      const a2 = allocated(e2);
      if (e1.zero && e2.zero) {
        // Nothing to read.
      } else if (a1 && a2) {
        chunk = Math.min(chunk, IO_BUF);
        const b1 = await readOf(s1, off, chunk);
        const b2 = await readOf(s2, off, chunk);
        const diff = firstDifference(b1, b2);
        if (diff >= 0) {
          say(`Content mismatch at offset ${off + diff}!\n`);
          return 1;
        }
      } else if (a1 || a2) {
        // check_empty_sectors: only the side that has data is read; the other reads as zeroes.
        chunk = Math.min(chunk, IO_BUF);
        const diff = firstDifference(await readOf(a1 ? s1 : s2, off, chunk), undefined);
        if (diff >= 0) {
          say(`Content mismatch at offset ${off + diff}!\n`);
          return 1;
        }
      }
      off += chunk;
      progress.advance(percentOf(chunk, base));
    }
    if (size1 !== size2) {
      say('Warning: Image size mismatch!\n');
      const over = size1 > size2 ? s1 : s2;
      for (let off = common; off < base; ) {
        const e = await statusOf(over, off, base - off);
        let chunk = e.length;
        if (allocated(e) && !e.zero) {
          chunk = Math.min(chunk, IO_BUF);
          const buf = await readOf(over, off, chunk);
          const diff = firstDifference(buf, undefined);
          if (diff >= 0) {
            say(`Content mismatch at offset ${off + diff}!\n`);
            return 1;
          }
        }
        off += chunk;
        progress.advance(percentOf(chunk, base));
      }
    }
    say('Images are identical.\n');
    return 0;
  } catch (err) {
    if (err instanceof ImgFailure) throw err.exitCode === 1 ? err.withExitCode(2) : err;
    const msg = err instanceof Error ? err.message : String(err);
    throw new ImgFailure(msg, { exitCode: 2 });
  } finally {
    progress.end();
    for (const img of opened) await img.close();
  }
}

/**
 * Allocated somewhere in the chain, as QEMU's whole-chain block status says.
 * A run past the end of a shorter backing file counts as allocated zeroes
 * there (QEMU synthesises them in the short layer).
 */
function allocated(e: MapEntry): boolean {
  return e.present || e.beyondBacking === true;
}

/** The status bits qemu-img compare -s compares: allocated, zero, data, offset-valid, end-of-image. */
function strictFlags(e: MapEntry, size: number): string {
  const eof = e.start + e.length === size ? 1 : 0;
  return `${+allocated(e)}${+e.zero}${+e.data}${+(e.offset !== undefined)}${eof}`;
}

/** Offset of the first 512-byte sector where a and b (or zeroes) differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array | undefined): number {
  const zero = new Uint8Array(SECTOR);
  for (let i = 0; i < a.length; i += SECTOR) {
    const end = Math.min(i + SECTOR, a.length);
    const other = b === undefined ? zero.subarray(0, end - i) : b.subarray(i, end);
    if (Buffer.compare(a.subarray(i, end), other) !== 0) return i;
  }
  return -1;
}
