import type { CommandContext, CommandInfo } from '../command.js';
import { errnoOf, strerror } from '../../../image/errno.js';
import { numberArg } from '../request.js';
import { humanSize } from '../report.js';
import type { IoExtent, QemuIoTarget } from '../target.js';

/**
 * `map` and `alloc`: whether ranges are allocated in this image itself
 * (bdrv_is_allocated), not whether they hold data. Raw images are allocated
 * everywhere; a qcow2 range that falls through to the backing file is not.
 */

/** Allocated in the image itself: a run answered from a backing file is not. */
function allocatedHere(e: IoExtent): boolean {
  return e.allocated && (e.depth ?? 0) === 0;
}

/** bdrv_is_allocated: status of the run at `offset`, clipped to the image (length 0 at or past its end). */
async function isAllocated(t: QemuIoTarget, offset: number, bytes: number): Promise<{ allocated: boolean; length: number }> {
  const avail = Math.min(bytes, t.size() - offset);
  if (avail <= 0) return { allocated: false, length: 0 };
  const e = await t.blockStatus(offset, avail);
  return { allocated: allocatedHere(e), length: Math.min(e.length, avail) };
}

export const mapCommand: CommandInfo = {
  name: 'map',
  argmin: 0,
  argmax: 0,
  args: '',
  oneline: 'prints the allocated areas of a file',
  run: runMap,
};

/** One line per maximal run with the same allocation status. */
async function runMap(ctx: CommandContext): Promise<boolean> {
  const t = ctx.target;
  let offset = 0;
  let bytes = t.size();
  while (bytes > 0) {
    let first: { allocated: boolean; length: number };
    let num: number;
    try {
      first = await isAllocated(t, offset, bytes);
      num = first.length;
      while (num > 0 && num < bytes) {
        const next = await isAllocated(t, offset + num, bytes - num);
        if (next.allocated !== first.allocated || next.length === 0) break;
        num += next.length;
      }
    } catch (err) {
      ctx.out.report(`Failed to get allocation status: ${strerror(errnoOf(err))}`);
      return false;
    }
    if (num === 0) {
      ctx.out.report('Unexpected end of image');
      return false;
    }
    const what = first.allocated ? '    allocated' : 'not allocated';
    ctx.out.out(`${humanSize(num)} (0x${num.toString(16)}) bytes ${what} at offset ${humanSize(offset)} (0x${offset.toString(16)})\n`);
    offset += num;
    bytes -= num;
  }
  return true;
}

export const allocCommand: CommandInfo = {
  name: 'alloc',
  altname: 'a',
  argmin: 1,
  argmax: 2,
  args: 'offset [count]',
  oneline: 'checks if offset is allocated in the file',
  run: runAlloc,
};

/**
 * `alloc offset [count]` (count defaults to one sector): how many bytes of
 * the range are allocated; a range running past the end is cut there.
 * qemu-io takes both words as they are, with no option parsing.
 */
async function runAlloc(ctx: CommandContext): Promise<boolean> {
  const start = numberArg(ctx, ctx.argv[1]!);
  if (start === undefined) return false;
  let count = 512n;
  if (ctx.argv.length === 3) {
    const c = numberArg(ctx, ctx.argv[2]!);
    if (c === undefined) return false;
    count = c;
  }
  const size = BigInt(ctx.target.size());
  let offset = start;
  let remaining = count;
  let sum = 0n;
  while (remaining > 0n) {
    let r = { allocated: false, length: 0 };
    if (offset < size) {
      try {
        r = await isAllocated(ctx.target, Number(offset), Number(remaining < size ? remaining : size));
      } catch (err) {
        ctx.out.out(`is_allocated failed: ${strerror(errnoOf(err))}\n`);
        return false;
      }
    }
    const num = BigInt(r.length);
    offset += num;
    remaining -= num;
    if (r.allocated) sum += num;
    if (num === 0n) {
      count -= remaining;
      remaining = 0n;
    }
  }
  ctx.out.out(`${sum}/${count} bytes allocated at offset ${humanSize(Number(start))}\n`);
  return true;
}
