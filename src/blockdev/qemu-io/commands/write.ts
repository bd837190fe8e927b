import { BlockError } from '../../../image/errors.js';
import { type CommandContext, type CommandInfo, usage } from '../command.js';
import { getopt } from '../getopt.js';
import { parsePattern } from '../numbers.js';
import { reportLines } from '../report.js';
import { checkRange, failed, inPieces, MAX_REQUEST, numberArg, PIECE, timed } from '../request.js';
import { sectorMisaligned } from './read.js';
import { patternFromFile } from './pattern-file.js';

const HELP = `
 writes a range of bytes from the given offset

 Example:
 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -b, -- write to the VM state rather than the virtual disk
 -c, -- write compressed data with blk_write_compressed
 -f, -- use Force Unit Access semantics
 -n, -- with -z, don't allow slow fallback
 -p, -- ignored for backwards compatibility
 -P, -- use different pattern to fill file
 -s, -- use a pattern file to fill the write buffer
 -C, -- report statistics in a machine parsable format
 -q, -- quiet mode, do not show I/O statistics
 -u, -- with -z, allow unmapping
 -z, -- write zeroes using blk_co_pwrite_zeroes

`;

/** qemu-io fills write buffers with 0xcd unless told otherwise. */
const DEFAULT_PATTERN = 0xcd;

/**
 * `write [-bcCfnpquz] [-P pattern | -s source_file] off len`, checks in
 * qemu-io 7.2's order. -f (FUA) goes with each request, whose device
 * flushes as part of it (a qcow2 node's flush then sees the write count
 * before the write, as QEMU's FUA emulation does); -n (no slow
 * fallback for zero writes) is accepted and has no effect, since our images
 * have no slow path to refuse.
 */
export const writeCommand: CommandInfo = {
  name: 'write',
  altname: 'w',
  argmin: 2,
  argmax: -1,
  args: '[-bcCfnquz] [-P pattern | -s source_file] off len',
  oneline: 'writes a number of bytes at a specified offset',
  help: HELP,
  write: true,
  run,
};

interface Flags {
  vmstate: boolean;
  compressed: boolean;
  machine: boolean;
  fua: boolean;
  noFallback: boolean;
  quiet: boolean;
  unmap: boolean;
  zero: boolean;
  pattern?: number;
  sourceFile?: string;
}

async function run(ctx: CommandContext): Promise<boolean> {
  const o = getopt(ctx.argv, 'bcCfnpP:qs:uz');
  const f: Flags = { vmstate: false, compressed: false, machine: false, fua: false, noFallback: false, quiet: false, unmap: false, zero: false };
  for (const { opt, value } of o.options) {
    switch (opt) {
      case 'b': f.vmstate = true; break;
      case 'c': f.compressed = true; break;
      case 'C': f.machine = true; break;
      case 'f': f.fua = true; break;
      case 'n': f.noFallback = true; break;
      case 'q': f.quiet = true; break;
      case 's': f.sourceFile = value; break;
      case 'u': f.unmap = true; break;
      case 'z': f.zero = true; break;
      case 'P':
        f.pattern = parsePattern(value);
        if (f.pattern === undefined) {
          ctx.out.out(`${value} is not a valid pattern byte\n`);
          return false;
        }
        break;
      // -p: ignored for backwards compatibility
    }
  }
  if (o.error !== undefined) {
    ctx.out.err(o.error);
    return usage(ctx, writeCommand);
  }
  if (o.operands.length !== 2) return usage(ctx, writeCommand);
  const conflict = conflictingFlags(f);
  if (conflict) {
    ctx.out.out(`${conflict}\n`);
    return false;
  }
  const [offArg, lenArg] = o.operands as [string, string];
  const offset = numberArg(ctx, offArg);
  if (offset === undefined) return false;
  const count = numberArg(ctx, lenArg);
  if (count === undefined) return false;
  if (count > MAX_REQUEST && !f.noFallback) {
    ctx.out.out(`length cannot exceed ${MAX_REQUEST} without -n, given ${lenArg}\n`);
    return false;
  }
  if (f.vmstate || f.compressed) {
    if (offset % 512n !== 0n) return sectorMisaligned(ctx, offset, 'offset');
    if (count % 512n !== 0n) return sectorMisaligned(ctx, count, 'count');
  }
  let source: Uint8Array | undefined;
  if (!f.zero && f.sourceFile !== undefined) {
    source = await patternFromFile(ctx, f.sourceFile, count);
    if (!source) return false;
  }
  // do_save_vmstate: one request into the VM state area, no range check against the disk's size.
  if (f.vmstate) {
    const t = ctx.target;
    const n = Number(count);
    const data = source ?? new Uint8Array(n).fill(f.pattern ?? DEFAULT_PATTERN);
    const r = await timed(ctx, async () => {
      if (!t.saveVmState) throw new BlockError('UNSUPPORTED', 'this image cannot store VM state', { errno: 'ENOTSUP' });
      await t.saveVmState(Number(offset), data);
    });
    if (r.errno !== undefined) return failed(ctx, 'write', r.errno);
    if (!f.quiet) ctx.out.out(reportLines('wrote', r.elapsed, Number(offset), n, n, 1, f.machine));
    return true;
  }

  const range = checkRange(ctx.target, offset, count);
  if (!range) return failed(ctx, 'write', 'EIO');
  const { offset: off, bytes } = range;
  const fill = f.pattern ?? DEFAULT_PATTERN;
  const fua = f.fua;
  const r = await timed(ctx, async () => {
    if (f.zero) await ctx.target.writeZeroes(off, bytes, { mayUnmap: f.unmap && ctx.unmap, fua });
    else if (f.compressed) await writeCompressed(ctx, off, bytes, source ?? new Uint8Array(bytes).fill(fill));
    else if (source) await inPieces(off, bytes, (o2, len) => ctx.target.write(o2, source.subarray(o2 - off, o2 - off + len), { fua }));
    else {
      const piece = new Uint8Array(Math.min(bytes, PIECE)).fill(fill);
      await inPieces(off, bytes, (o2, len) => ctx.target.write(o2, piece.subarray(0, len), { fua }));
    }
  });
  if (r.errno !== undefined) return failed(ctx, 'write', r.errno);
  if (!f.quiet) ctx.out.out(reportLines('wrote', r.elapsed, off, bytes, bytes, 1, f.machine));
  return true;
}

/** The flag combinations qemu-io refuses, in the order it checks them. */
function conflictingFlags(f: Flags): string | undefined {
  if (f.vmstate && f.zero) return '-b and -z cannot be specified at the same time';
  if (f.fua && (f.vmstate || f.compressed)) return '-f and -b or -c cannot be specified at the same time';
  if (f.noFallback && !f.zero) return '-n requires -z to be specified';
  if (f.unmap && !f.zero) return '-u requires -z to be specified';
  if (Number(f.zero) + Number(f.pattern !== undefined) + Number(f.sourceFile !== undefined) > 1) {
    return 'Only one of -z, -P, and -s can be specified at the same time';
  }
  return undefined;
}

/**
 * Compressed writes go cluster by cluster, as qcow2 does them: the offset
 * must start a cluster and every piece must be a whole cluster, except one
 * that ends at the end of the image (else EINVAL, as QEMU answers).
 */
async function writeCompressed(ctx: CommandContext, offset: number, bytes: number, data: Uint8Array): Promise<void> {
  const t = ctx.target;
  if (!t.writeCompressed) throw new BlockError('UNSUPPORTED', 'compressed writes are not supported by this image', { errno: 'ENOTSUP' });
  const cs = t.info?.().clusterSize ?? bytes;
  if (cs <= 0 || offset % cs !== 0) throw misaligned();
  for (let done = 0; done < bytes; done += cs) {
    const len = Math.min(cs, bytes - done);
    if (len < cs && offset + done + len !== t.size()) throw misaligned();
    await t.writeCompressed(offset + done, data.subarray(done, done + len));
  }
}

function misaligned(): BlockError {
  return new BlockError('INVALID_ARGUMENT', 'compressed writes must cover whole clusters', { errno: 'EINVAL' });
}
