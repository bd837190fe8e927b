import { stat } from 'node:fs/promises';
import { checkImage, isFormat, openImage } from '../image/open.js';
import type { ImageFormat } from '../image/types.js';
import { probeFormat } from '../image/probe.js';
import type { CheckMessage, CheckResult, RepairMode } from '../image/qcow2/check.js';
import { checkForceShare } from '../image/tool-perms.js';
import { parseOutputFormat } from './img/info.js';
import { parseImageOpts } from '../blockdev/qemu-io/qemu-opts.js';
import { checkThroughGraph, needsGraph, openProtocolBacking } from './img/graph-open.js';
import { cliLocks, innerOpenMessage, openFailureText, probedRawWarning, withHint } from './img/open.js';
import { type ImgIo, ImgFailure, PROG, usageError } from './img/output.js';

export interface CheckArgs {
  format?: string;
  repair?: string;
  output?: string;
  quiet: boolean;
  /** -U (refused with -r, as QEMU refuses force-share for a writer) */
  forceShare?: boolean;
  /** --image-opts: the operand is an option string. */
  imageOpts?: boolean;
  args: string[];
}

/**
 * `blockemu img check`: qemu-img check's output and exit codes. The check's
 * findings go to stderr line by line, the summary (or JSON) to stdout; exit
 * 0 clean, 1 check failed or image not opened, 2 corruptions, 3 leaks only,
 * 63 format without checks (raw).
 */
export async function imgCheck(io: ImgIo, a: CheckArgs): Promise<number> {
  let repair: RepairMode | undefined;
  if (a.repair !== undefined) {
    if (a.repair !== 'leaks' && a.repair !== 'all') {
      throw usageError(`Unknown option value for -r (expecting 'leaks' or 'all'): ${a.repair}`);
    }
    repair = a.repair;
  }
  const dash = a.args.find((x) => x.startsWith('-') && x !== '-');
  if (dash !== undefined) throw usageError(`unrecognized option '${dash}'`);
  if (a.args.length !== 1) throw usageError('Expecting one image file name');
  const name = a.args[0]!;
  const fmt = parseOutputFormat(a.output);
  const writable = repair !== undefined;
  let result: CheckResult;
  if (a.imageOpts || needsGraph(name)) {
    // blkdebug:…, json:…, an option string: the protocol opened as nodes, the check over them.
    let options: Map<string, string> | undefined;
    if (a.imageOpts) {
      if (a.format !== undefined) throw new ImgFailure('--image-opts and --format are mutually exclusive');
      const parsed = parseImageOpts(name, 'file');
      for (const w of parsed.warnings) io.err(`${PROG}: ${w}\n`);
      options = parsed.opts;
    }
    const r = await checkThroughGraph(a.imageOpts ? undefined : name, { format: a.format, repair, forceShare: a.forceShare, options }).catch((err: unknown) => {
      throw new ImgFailure(`Could not open '${name}': ${withHint(innerOpenMessage(err, name), err)}`);
    });
    if (r === 'raw' || r === 'luks') throw new ImgFailure('This image format does not support checks', { exitCode: 63 });
    result = r;
  } else {
    const format = await openFormat(io, name, a.format, writable, a.forceShare);
    if (format !== 'qcow2') throw new ImgFailure('This image format does not support checks', { exitCode: 63 });
    try {
      // Opened with its backing chain and locked as qemu-img check's img_open (BDRV_O_CHECK, read-write to repair).
      result = await checkImage(name, { repair, locks: cliLocks({ readOnly: !writable, forceShare: a.forceShare }), openProtocolImage: openProtocolBacking });
    } catch (err) {
      throw new ImgFailure(`Could not open '${name}': ${await openFailureText(err, name, 'qcow2')}`);
    }
  }
  const say = (text: string) => {
    if (!a.quiet) io.out(text);
  };
  printMessages(io, result.firstPassMessages);
  if (result.repaired && fmt === 'human') {
    say(
      'The following inconsistencies were found and repaired:\n\n' +
        `    ${result.leaksFixed} leaked clusters\n` +
        `    ${result.corruptionsFixed} corruptions\n\n` +
        'Double checking the fixed image now...\n',
    );
  }
  printMessages(io, result.messages.slice(result.firstPassMessages.length));
  if (result.failure) throw new ImgFailure(`Check failed: ${result.failure.text}`);
  say(fmt === 'json' ? `${JSON.stringify(toJson(result, name), null, 4)}\n` : toHuman(result));
  if (result.checkErrors) throw new ImgFailure('Check failed');
  return result.corruptions ? 2 : result.leaks ? 3 : 0;
}

/**
 * The format to check, after making sure the file opens as QEMU would (so a
 * missing file or an unknown driver fails the same way before any check).
 */
async function openFormat(io: ImgIo, name: string, format: string | undefined, writable: boolean, forceShare: boolean | undefined): Promise<ImageFormat> {
  if (format !== undefined && !isFormat(format)) {
    throw new ImgFailure(`Could not open '${name}': Unknown driver '${format}'`);
  }
  try {
    checkForceShare(!writable, forceShare);
  } catch (err) {
    throw new ImgFailure(`Could not open '${name}': ${(err as Error).message}`);
  }
  const st = await stat(name).catch(() => undefined);
  if (st?.isDirectory()) throw new ImgFailure(`Could not open '${name}': 'file' driver requires '${name}' to be a regular file`);
  let probed: ImageFormat;
  try {
    probed = format !== undefined && isFormat(format) ? format : await probeFormat(name);
    // A raw or luks image opens (and locks; luks unlocks) before qemu-img finds it has no checks.
    if (probed !== 'qcow2') await (await openImage(name, { format: probed, readOnly: !writable, locks: cliLocks({ readOnly: !writable, forceShare }) })).close();
  } catch (err) {
    throw new ImgFailure(`Could not open '${name}': ${await openFailureText(err, name, format !== undefined && isFormat(format) ? format : undefined)}`);
  }
  if (probed === 'raw' && format === undefined && writable) {
    io.err(probedRawWarning(name));
  }
  return probed;
}

function printMessages(io: ImgIo, messages: CheckMessage[]): void {
  for (const m of messages) {
    const text = m.reported ? `${PROG}: ${m.text}` : m.text;
    io.err(m.noNewline ? text : `${text}\n`);
  }
}

/**
 * ImageCheck as qemu-img prints it: optional members only when non-zero,
 * in the order QEMU's QDict hash table yields them (not declaration order).
 */
function toJson(r: CheckResult, filename: string): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const opt = (key: string, v: number) => {
    if (v !== 0) o[key] = v;
  };
  opt('image-end-offset', r.imageEndOffset);
  opt('compressed-clusters', r.compressedClusters);
  opt('total-clusters', r.totalClusters);
  opt('corruptions', r.corruptions);
  opt('corruptions-fixed', r.corruptionsFixed);
  o['check-errors'] = r.checkErrors;
  opt('leaks', r.leaks);
  opt('leaks-fixed', r.leaksFixed);
  opt('allocated-clusters', r.allocatedClusters);
  o['filename'] = filename;
  o['format'] = r.format;
  opt('fragmented-clusters', r.fragmentedClusters);
  return o;
}

function toHuman(r: CheckResult): string {
  let s = '';
  if (!(r.corruptions || r.leaks || r.checkErrors)) {
    s += 'No errors were found on the image.\n';
  } else {
    if (r.corruptions) {
      s += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
    }
    if (r.leaks) {
      s += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
    }
    if (r.checkErrors) s += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
  }
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    const pct = (n: number, d: number) => printfFixed2((n * 100.0) / d);
    s +=
      `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ` +
      `${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${pct(r.compressedClusters, r.allocatedClusters)}% compressed clusters\n`;
  }
  if (r.imageEndOffset) s += `Image end offset: ${r.imageEndOffset}\n`;
  return s;
}

/**
 * printf("%0.2f") of a non-negative double: rounds the exact binary value,
 * ties to even as glibc does (toFixed rounds ties up: 0.125 -> "0.13").
 */
export function printfFixed2(x: number): string {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const expField = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  if (expField === 0 && frac === 0n) return '0.00';
  const mant = expField === 0 ? frac : frac | (1n << 52n);
  const exp = (expField === 0 ? 1 : expField) - 1075; // x = mant * 2^exp
  let q: bigint;
  if (exp >= 0) {
    q = (mant * 100n) << BigInt(exp);
  } else {
    const den = 1n << BigInt(-exp);
    const num = mant * 100n;
    q = num / den;
    const twice = 2n * (num % den);
    if (twice > den || (twice === den && q % 2n === 1n)) q += 1n;
  }
  return `${q / 100n}.${(q % 100n).toString().padStart(2, '0')}`;
}
