import { BlockError } from '../../../image/errors.js';
import { type CommandContext, type CommandInfo, usage } from '../command.js';
import { getopt } from '../getopt.js';
import { parsePattern } from '../numbers.js';
import { hexDump, reportLines } from '../report.js';
import { checkRange, failed, inPieces, MAX_REQUEST, numberArg, timed } from '../request.js';

const HELP = `
 reads a range of bytes from the given offset

 Example:
 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 -b, -- read from the VM state rather than the virtual disk
 -C, -- report statistics in a machine parsable format
 -l, -- length for pattern verification (only with -P)
 -p, -- ignored for backwards compatibility
 -P, -- use a pattern to verify read data
 -q, -- quiet mode, do not show I/O statistics
 -s, -- start offset for pattern verification (only with -P)
 -v, -- dump buffer to standard output

`;

/**
 * `read [-bCpqv] [-P pattern [-s off] [-l len]] off len`, checks in qemu-io
 * 7.2's order. A pattern mismatch is reported and makes the command fail,
 * but the statistics (and -v dump) still follow, as in qemu-io.
 */
export const readCommand: CommandInfo = {
  name: 'read',
  altname: 'r',
  argmin: 2,
  argmax: -1,
  args: '[-abCqv] [-P pattern [-s off] [-l len]] off len',
  oneline: 'reads a number of bytes at a specified offset',
  help: HELP,
  run,
};

async function run(ctx: CommandContext): Promise<boolean> {
  const o = getopt(ctx.argv, 'bCl:pP:qs:v');
  let vmstate = false;
  let machine = false;
  let quiet = false;
  let dump = false;
  let pattern: number | undefined;
  let patternOffset: bigint | undefined;
  let patternLength: bigint | undefined;
  for (const { opt, value } of o.options) {
    switch (opt) {
      case 'b':
        vmstate = true;
        break;
      case 'C':
        machine = true;
        break;
      case 'l':
        patternLength = numberArg(ctx, value);
        if (patternLength === undefined) return false;
        break;
      case 'P':
        pattern = parsePattern(value);
        if (pattern === undefined) {
          ctx.out.out(`${value} is not a valid pattern byte\n`);
          return false;
        }
        break;
      case 'q':
        quiet = true;
        break;
      case 's':
        patternOffset = numberArg(ctx, value);
        if (patternOffset === undefined) return false;
        break;
      case 'v':
        dump = true;
        break;
      // -p: ignored for backwards compatibility
    }
  }
  if (o.error !== undefined) {
    ctx.out.err(o.error);
    return usage(ctx, readCommand);
  }
  if (o.operands.length !== 2) return usage(ctx, readCommand);
  const [offArg, lenArg] = o.operands as [string, string];
  const offset = numberArg(ctx, offArg);
  if (offset === undefined) return false;
  const count = numberArg(ctx, lenArg);
  if (count === undefined) return false;
  if (count > MAX_REQUEST) {
    ctx.out.out(`length cannot exceed ${MAX_REQUEST}, given ${lenArg}\n`);
    return false;
  }
  if (pattern === undefined && (patternOffset !== undefined || patternLength !== undefined)) return usage(ctx, readCommand);
  const pOff = patternOffset ?? 0n;
  const pLen = patternLength ?? count - pOff;
  if (pLen < 0n || pLen + pOff > count) {
    ctx.out.out('pattern verification range exceeds end of read data\n');
    return false;
  }
  if (vmstate) {
    if (offset % 512n !== 0n) return sectorMisaligned(ctx, offset, 'offset');
    if (count % 512n !== 0n) return sectorMisaligned(ctx, count, 'count');
  }
  // do_load_vmstate: one request into the VM state area, not checked against the disk's size.
  const range = vmstate ? { offset: Number(offset), bytes: Number(count) } : checkRange(ctx.target, offset, count);
  if (!range) return failed(ctx, 'read', 'EIO');
  const t = ctx.target;
  const readVmState = async (off: number, len: number) => {
    if (!t.loadVmState) throw new BlockError('UNSUPPORTED', 'this image cannot store VM state', { errno: 'ENOTSUP' });
    return t.loadVmState(off, len);
  };
  const verifyFrom = range.offset + Number(pOff);
  const verifyTo = verifyFrom + Number(pLen);
  let mismatch = false;
  const dumps: string[] = [];
  const piece = async (off: number, len: number) => {
    const data = vmstate ? await readVmState(off, len) : await t.read(off, len);
    if (pattern !== undefined && !mismatch) mismatch = !matches(data, off, verifyFrom, verifyTo, pattern);
    if (dump) dumps.push(hexDump(data, off));
  };
  const r = await timed(ctx, () => (vmstate ? piece(range.offset, range.bytes) : inPieces(range.offset, range.bytes, piece)));
  if (r.errno !== undefined) return failed(ctx, 'read', r.errno);
  if (mismatch) ctx.out.out(`Pattern verification failed at offset ${verifyFrom}, ${pLen} bytes\n`);
  if (quiet) return !mismatch;
  if (dump) ctx.out.out(dumps.join(''));
  ctx.out.out(reportLines('read', r.elapsed, range.offset, range.bytes, range.bytes, 1, machine));
  return !mismatch;
}

/** Whether data (read at `off`) holds `pattern` wherever it overlaps [from, to). */
function matches(data: Uint8Array, off: number, from: number, to: number, pattern: number): boolean {
  const start = Math.max(from, off) - off;
  const end = Math.min(to, off + data.length) - off;
  for (let i = start; i < end; i++) if (data[i] !== pattern) return false;
  return true;
}

export function sectorMisaligned(ctx: CommandContext, value: bigint, what: 'offset' | 'count'): false {
  ctx.out.out(`${value} is not a sector-aligned value for '${what}'\n`);
  return false;
}
