import { altHex } from '../../image/numfmt.js';
import { parseOutputFormat } from './info.js';
import { openImageOpts } from './image-opts.js';
import { chainNames, openForCli } from './open.js';
import { type ImgIo, ImgFailure, usageError } from './output.js';
import { parseQemuSize } from './size-arg.js';
import { chainStatus, type MapEntry, mergeable } from './status.js';

export interface MapArgs {
  format?: string;
  output?: string;
  startOffset?: string;
  maxLength?: string;
  /** -U */
  forceShare?: boolean;
  /** --image-opts: the operand is an option string. */
  imageOpts?: boolean;
  args: string[];
}

/** qemu-img map asks about at most this much at a time. */
const MAP_STEP = 1 << 30;

/**
 * `blockemu img map`: streams merged extents as they are found (an image can
 * have millions), in qemu-img's JSON lines or its human table, which lists
 * only runs holding data and fails on data without a host offset (compressed
 * clusters), as qemu-img does.
 */
export async function imgMap(io: ImgIo, a: MapArgs): Promise<number> {
  const dash = a.args.find((x) => x.startsWith('-') && x !== '-');
  if (dash !== undefined) throw usageError(`unrecognized option '${dash}'`);
  const fmt = parseOutputFormat(a.output);
  const start = a.startOffset === undefined ? 0 : offsetArg(a.startOffset, 'start offset');
  const maxLength = a.maxLength === undefined ? undefined : offsetArg(a.maxLength, 'max length');
  if (a.args.length !== 1) throw usageError('Expecting one image file name');
  const name = a.args[0]!;
  const img = a.imageOpts ? await openImageOpts(io, name, { format: a.format, readOnly: true, forceShare: a.forceShare }) : await openForCli(name, { format: a.format, forceShare: a.forceShare });
  try {
    // An option string names no file: each extent's node says where its data is.
    const names = a.imageOpts ? [] : chainNames(img, name);
    const end = Math.min(img.size(), maxLength === undefined ? Infinity : start + maxLength);
    const dump = fmt === 'json' ? jsonDumper(io) : humanDumper(io);
    let curr: MapEntry = { start, length: 0, depth: 0, present: false, zero: false, data: false };
    for (let off = start; off < end; ) {
      const next = await chainStatus(img, names, off, Math.min(MAP_STEP, end - off));
      off += next.length;
      if (mergeable(curr, next)) {
        curr.length += next.length;
        continue;
      }
      if (curr.length > 0) dump(curr, false);
      curr = next;
    }
    dump(curr, true);
    return 0;
  } finally {
    await img.close();
  }
}

function offsetArg(text: string, what: string): number {
  const r = parseQemuSize(text);
  if (!r.ok || r.value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ImgFailure([
      `Invalid ${what} specified. You may use k, M, G, T, P or E suffixes for`,
      'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.',
    ]);
  }
  return Number(r.value);
}

type Dumper = (e: MapEntry, last: boolean) => void;

function jsonDumper(io: ImgIo): Dumper {
  let first = true;
  return (e, last) => {
    const off = e.offset !== undefined ? `, "offset": ${e.offset}` : '';
    const line = `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}${off}}`;
    io.out(`${first ? '[' : ''}${line}${last ? ']\n' : ',\n'}`);
    first = false;
  };
}

function humanDumper(io: ImgIo): Dumper {
  io.out('Offset          Length          Mapped to       File\n');
  return (e) => {
    if (e.data && e.offset === undefined) throw new ImgFailure('File contains external, encrypted or compressed clusters.');
    if (e.data && !e.zero) {
      io.out(`${altHex(e.start).padEnd(16)}${altHex(e.length).padEnd(16)}${altHex(e.offset!).padEnd(16)}${e.filename}\n`);
    }
  };
}
