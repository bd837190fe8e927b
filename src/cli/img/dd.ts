import { imageOptsTarget } from './image-opts.js';
import { createImage, isFormat, openImage } from '../../image/open.js';
import { strerrorOf } from '../../image/errno.js';
import type { BlockImage } from '../../image/types.js';
import { ImgGetopt } from './img-getopt.js';
import { cliLocks, tryOpen } from './open.js';
import { type ImgIo, ImgFailure, PROG } from './output.js';
import { QEMU_FORMATS } from './formats.js';
import { INT64_MAX, parseQemuSize } from './size-arg.js';

export const DD_USAGE = 'dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] [skip=blocks] if=input of=output';

const LONG_OPTIONS = [
  { name: 'help', hasArg: false },
  { name: 'object', hasArg: true },
  { name: 'image-opts', hasArg: false },
  { name: 'force-share', hasArg: false },
];

/** cvtnum_full(name, …) with qemu-img's two messages. */
function cvtnum(name: string, text: string, min: bigint, max: bigint): bigint {
  const r = parseQemuSize(text);
  if (!r.ok && r.reason === 'invalid') {
    throw new ImgFailure([`Invalid ${name} specified. You may use k, M, G, T, P or E suffixes for`, 'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.']);
  }
  if (!r.ok || r.value < min || r.value > max) throw new ImgFailure(`Invalid ${name} specified. Must be between ${min} and ${max}.`);
  return r.value;
}

/**
 * `blockemu img dd` (qemu-img 7.2's img_dd): copies the input image, from
 * skip×bs for count×bs bytes (to its end by default), into a new image of
 * the output format, one block of bs bytes at a time.
 */
export async function imgDd(io: ImgIo, args: readonly string[]): Promise<number> {
  let format: string | undefined;
  let outFormat = 'raw';
  const getopt = new ImgGetopt('dd', args, ':hf:O:U', LONG_OPTIONS, DD_USAGE);
  for (const o of getopt) {
    switch (o.name) {
      case 'O':
        outFormat = o.value;
        break;
      case 'f':
        format = o.value;
        break;
    }
  }
  let bs = 512n;
  let count: bigint | undefined;
  let skip: bigint | undefined;
  let input: string | undefined;
  let output: string | undefined;
  for (const operand of getopt.operands()) {
    const eq = operand.indexOf('=');
    const key = eq < 0 ? undefined : operand.slice(0, eq);
    const value = operand.slice(eq + 1);
    if (key === 'bs') bs = cvtnum('bs', value, 1n, 0x7fffffffn);
    else if (key === 'count') count = cvtnum('count', value, 0n, INT64_MAX);
    else if (key === 'skip') skip = cvtnum('skip', value, 0n, INT64_MAX);
    else if (key === 'if') input = value;
    else if (key === 'of') output = value;
    else throw new ImgFailure(`unrecognized operand ${eq < 0 ? operand : key}`);
  }
  if (input === undefined || output === undefined) throw new ImgFailure('Must specify both input and output files');
  const target = getopt.imageOpts ? await imageOptsTarget(io, input, format, getopt.forceShare) : { filename: input, format, forceShare: getopt.forceShare };
  const r = await tryOpen(target.filename, { format: target.format, readOnly: true, forceShare: target.forceShare });
  if ('inner' in r) throw new ImgFailure(`Could not open '${input}': ${r.inner}`);
  const src = r.image;
  let dst: BlockImage | undefined;
  try {
    if (!QEMU_FORMATS.has(outFormat)) throw new ImgFailure('Unknown file format');
    if (!isFormat(outFormat)) throw new ImgFailure(`Output format '${outFormat}' is not supported by blockemu (raw and qcow2 are)`);
    // blk_getlength: whole sectors.
    let size = BigInt(Math.ceil(src.size() / 512) * 512);
    if (count !== undefined && count <= INT64_MAX / bs && count * bs < size) size = count * bs;
    const beyond = skip !== undefined && (skip > INT64_MAX / bs || size < skip * bs);
    const outSize = beyond ? 0n : size - bs * (skip ?? 0n);
    try {
      await createImage(output, { format: outFormat, size: Number(outSize) });
    } catch (err) {
      throw new ImgFailure(`${output}: error while creating output image: ${err instanceof Error ? err.message : String(err)}`);
    }
    dst = await openImage(output, { format: outFormat, readOnly: false, locks: cliLocks({ readOnly: false }) });
    let inPos: bigint;
    if (beyond) {
      io.err(`${PROG}: ${input}: cannot skip to specified offset\n`);
      inPos = size;
    } else inPos = (skip ?? 0n) * bs;
    for (let outPos = 0; inPos < size; ) {
      const bytes = Number(inPos + bs > size ? size - inPos : bs);
      let buf: Uint8Array;
      try {
        // Past the end of the last sector the input has nothing: zeroes, as a read of QEMU's padded length gives.
        buf = new Uint8Array(bytes);
        const avail = Math.max(0, Math.min(bytes, src.size() - Number(inPos)));
        if (avail > 0) buf.set(await src.read(Number(inPos), avail));
      } catch (err) {
        throw new ImgFailure(`error while reading from input image file: ${strerrorOf(err)}`);
      }
      inPos += BigInt(bytes);
      try {
        await dst.write(outPos, buf);
      } catch (err) {
        throw new ImgFailure(`error while writing to output image file: ${strerrorOf(err)}`);
      }
      outPos += bytes;
    }
    return 0;
  } finally {
    await dst?.close();
    await src.close();
  }
}
