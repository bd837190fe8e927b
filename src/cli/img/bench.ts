import { imageOptsTarget } from './image-opts.js';
import { strerrorOf } from '../../image/errno.js';
import type { BlockImage } from '../../image/types.js';
import { parseCacheMode } from '../io-args.js';
import { ImgGetopt } from './img-getopt.js';
import { probedRawWarning, tryOpen } from './open.js';
import { type ImgIo, ImgFailure, usageError } from './output.js';
import { INT64_MAX, parseQemuSize } from './size-arg.js';

export const BENCH_USAGE =
  'bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename';

const LONG_OPTIONS = [
  { name: 'help', hasArg: false },
  { name: 'flush-interval', hasArg: true },
  { name: 'image-opts', hasArg: false },
  { name: 'pattern', hasArg: true },
  { name: 'no-drain', hasArg: false },
  { name: 'force-share', hasArg: false },
];

const INT_MAX = 0x7fffffff;

/** qemu_strtoul with base 0 (0x hex, 0 octal, decimal), undefined when it fails or exceeds max. */
function strtoul(text: string, max: number): number | undefined {
  const m = /^\s*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)$/.exec(text);
  if (!m) return undefined;
  const s = m[1]!;
  const v = /^0[xX]/.test(s) ? Number.parseInt(s.slice(2), 16) : s.length > 1 && s.startsWith('0') ? Number.parseInt(s.slice(1), 8) : Number(s);
  return v <= max ? v : undefined;
}

function cvtnum(name: string, text: string, max: bigint): number {
  const r = parseQemuSize(text);
  if (!r.ok && r.reason === 'invalid') {
    throw new ImgFailure([`Invalid ${name} specified. You may use k, M, G, T, P or E suffixes for`, 'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.']);
  }
  if (!r.ok || r.value > max) throw new ImgFailure(`Invalid ${name} specified. Must be between 0 and ${max}.`);
  return Number(r.value);
}

interface Bench {
  image: BlockImage;
  size: number;
  write: boolean;
  bufsize: number;
  step: number;
  depth: number;
  n: number;
  offset: number;
  flushInterval: number;
  drain: boolean;
  buf: Uint8Array;
}

/**
 * `blockemu img bench` (qemu-img 7.2's img_bench): `count` reads or writes
 * of `buffer_size` bytes, `depth` in flight, each `step` bytes after the
 * previous one (wrapping at the image's end), optionally a flush every
 * `flush_interval` requests (after draining the queue unless --no-drain),
 * and qemu-img's two report lines. -n and -i are accepted (Node has no
 * native AIO choice to make).
 */
export async function imgBench(io: ImgIo, args: readonly string[]): Promise<number> {
  let count = 75000;
  let depth = 64;
  let offset = 0;
  let bufsize = 4096;
  let pattern = 0;
  let step = 0;
  let flushInterval = 0;
  let drain = true;
  let format: string | undefined;
  let write = false;
  const getopt = new ImgGetopt('bench', args, ':hc:d:f:ni:o:qs:S:t:wU', LONG_OPTIONS, BENCH_USAGE);
  for (const o of getopt) {
    switch (o.name) {
      case 'c': {
        const v = strtoul(o.value, INT_MAX);
        if (v === undefined) throw new ImgFailure('Invalid request count specified');
        count = v;
        break;
      }
      case 'd': {
        const v = strtoul(o.value, INT_MAX);
        if (v === undefined) throw new ImgFailure('Invalid queue depth specified');
        depth = v;
        break;
      }
      case 'f':
        format = o.value;
        break;
      case 'n':
        break;
      case 'i':
        if (!['threads', 'native', 'io_uring'].includes(o.value)) throw new ImgFailure(`Invalid aio option: ${o.value}`);
        break;
      case 'o':
        offset = cvtnum('offset', o.value, INT64_MAX);
        break;
      case 'q':
        break;
      case 's':
        bufsize = cvtnum('buffer size', o.value, BigInt(INT_MAX));
        break;
      case 'S':
        step = cvtnum('step_size', o.value, BigInt(INT_MAX));
        break;
      case 't':
        if (parseCacheMode(o.value) === undefined) throw new ImgFailure('Invalid cache mode');
        break;
      case 'w':
        write = true;
        break;
      case 'pattern': {
        const v = strtoul(o.value, 0xff);
        if (v === undefined) throw new ImgFailure('Invalid pattern byte specified');
        pattern = v;
        break;
      }
      case 'flush-interval': {
        const v = strtoul(o.value, INT_MAX);
        if (v === undefined) throw new ImgFailure('Invalid flush interval specified');
        flushInterval = v;
        break;
      }
      case 'no-drain':
        drain = false;
        break;
    }
  }
  const operands = getopt.operands();
  if (operands.length !== 1) throw usageError('Expecting one image file name');
  const filename = operands[0]!;
  if (!write && flushInterval) throw new ImgFailure('--flush-interval is only available in write tests');
  if (flushInterval && flushInterval < depth) throw new ImgFailure("Flush interval can't be smaller than depth");
  const target = getopt.imageOpts ? await imageOptsTarget(io, filename, format, getopt.forceShare) : { filename, format, forceShare: getopt.forceShare };
  const r = await tryOpen(target.filename, { format: target.format, readOnly: !write, forceShare: target.forceShare });
  if ('inner' in r) throw new ImgFailure(`Could not open '${filename}': ${r.inner}`);
  const image = r.image;
  try {
    if (write && target.format === undefined && image.format === 'raw') io.err(probedRawWarning(filename));
    const b: Bench = {
      image,
      size: Math.ceil(image.size() / 512) * 512,
      write,
      bufsize,
      step: step || bufsize,
      depth,
      n: count,
      offset,
      flushInterval,
      drain,
      buf: new Uint8Array(bufsize).fill(pattern),
    };
    io.out(`Sending ${b.n} ${write ? 'write' : 'read'} requests, ${b.bufsize} bytes each, ${b.depth} in parallel (starting at offset ${b.offset}, step size ${b.step})\n`);
    if (flushInterval) io.out(`Sending flush every ${flushInterval} requests\n`);
    const t1 = process.hrtime.bigint();
    await run(b);
    const secs = Number(process.hrtime.bigint() - t1) / 1e9;
    io.out(`Run completed in ${secs.toFixed(3)} seconds.\n`);
    return 0;
  } finally {
    await image.close();
  }
}

/** bench_cb's state machine, with promises for completions; resolves when every request is done. */
function run(b: Bench): Promise<void> {
  return new Promise((resolve, reject) => {
    let inFlight = 0;
    let inFlush = false;
    const fail = (what: string) => (err: unknown) => reject(new ImgFailure(`${what}: ${strerrorOf(err)}`));
    const cb = (): void => {
      if (inFlush) inFlush = false;
      else if (inFlight > 0) {
        const remaining = b.n - inFlight;
        b.n--;
        inFlight--;
        if (b.flushInterval && remaining % b.flushInterval === 0) {
          if (!inFlight || !b.drain) {
            if (b.drain) {
              inFlush = true;
              b.image.flush().then(cb, fail('Failed request'));
            } else b.image.flush().catch(fail('Failed flush request'));
          }
          if (b.drain) return;
        }
      }
      if (b.n === 0) return resolve();
      while (b.n > inFlight && inFlight < b.depth) {
        const off = b.offset;
        inFlight++;
        b.offset = (b.offset + b.step) % b.size;
        // blk_check_byte_request: a request past the end fails with EIO.
        const req =
          off + b.bufsize > b.image.size()
            ? Promise.reject(new ImgFailure('Failed request: Input/output error'))
            : b.write
              ? b.image.write(off, b.buf)
              : b.image.readInto(b.buf, off);
        req.then(cb, (err: unknown) => reject(err instanceof ImgFailure ? err : new ImgFailure(`Failed request: ${strerrorOf(err)}`)));
      }
    };
    cb();
  });
}
