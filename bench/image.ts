/**
 * `npm run bench -- image`: blockemu's image layer against `qemu-img bench`
 * on the same kind of file, in the same run, with the same requests.
 *
 * Fairness, point by point:
 * - Same requests. Every workload is expressed in qemu-img bench's own terms
 *   (-s request size, -c count, -d depth, -S step, offset 0; request i at
 *   (i * step) mod image size) and the blockemu child issues exactly that
 *   sequence (bench/lib/image-worker.ts).
 * - Same depth. qemu-img keeps -d requests in flight; the child keeps the
 *   same number of promises in flight with a sliding window.
 * - Same cache mode. qemu-img bench's default is cache=writeback through the
 *   host page cache (no O_DIRECT) on its thread pool (aio=threads); blockemu
 *   also goes through the page cache, on libuv's thread pool. We pass
 *   `-t unsafe -i threads`: unsafe is writeback with flushes ignored, and
 *   neither side flushes inside the timed span (qemu's qcow2 caches cover
 *   the default 1 GiB image whole, so nothing is evicted), so the timed work
 *   is the same; what it saves is the fdatasync in qemu-img's close, seconds
 *   of disk write-back per run for a file we delete right after.
 * - No final flush on either side. qemu-img bench cannot time one: its clock
 *   stops when the last request completes; any flush comes later, in close.
 *   So both sides are timed from the first request to the last completion.
 *   (A timed fdatasync of 1 GiB would measure the disk, not the code, and
 *   drown the ratio in disk noise.) blockemu's qcow2 close still flushes,
 *   untimed: its metadata must reach the file for `qemu-img check`.
 * - Same starting point. Write workloads start from a fresh image (qcow2:
 *   64 KiB clusters, otherwise defaults), each side creating its own with its
 *   own tool, outside the timed span; reads use one pre-written image that
 *   both sides read, so both find it equally hot in the page cache.
 * - Noise. Each measurement runs `--runs` times (default 3), the two sides
 *   alternating which goes first, and the median is reported (plus fastest
 *   against fastest). Compare ratios; absolute times on a shared machine
 *   mean little.
 *
 * Random writes: qemu-img bench has no random mode and cannot read a list of
 * offsets, so instead of a PRNG (whose offsets only one side could follow)
 * both sides use a scattering stride: -S k×4 KiB with k coprime to the
 * number of 4 KiB blocks, so (i·k mod blocks) visits distinct blocks in a
 * scattered order. k is the first integer from blocks/φ up that is coprime
 * (Fibonacci hashing), the stride that spreads consecutive requests most
 * evenly.
 * Reproducible by construction (no seed needed), identical on both sides, and
 * like random writes it touches qcow2 clusters in no particular order,
 * allocating on the first touch of a cluster and writing in place later.
 *
 * Peak RSS is blockemu's alone: each blockemu run is its own Node process
 * and reports process.resourceUsage().maxRSS (bench/lib/child.ts).
 */
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { ImageFormat } from '../src/image/types.js';
import { intFlag, type BenchContext } from './lib/context.js';
import { runChild } from './lib/child.js';
import type { ImageJob, ImageResult } from './lib/image-worker.js';
import { hasQemuImg, qemuImg, qemuImgBench } from './lib/qemu.js';
import { fmtRate, fmtSeconds, median, MiB, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'sequential 1 GiB write/read and 4 KiB scattered writes, raw and qcow2, blockemu vs qemu-img bench';
export const flags = {
  size: 'image size in MiB (default 1024)',
  ops: 'number of 4 KiB scattered writes (default 65536)',
};

const WORKER = fileURLToPath(new URL('./lib/image-worker.js', import.meta.url));
const FORMATS: readonly ImageFormat[] = ['raw', 'qcow2'];
const CLUSTER = 64 * 1024;
const PATTERN = 0xa5;
/** From the issue: sequential I/O within 1.5× of qemu-img's time; peak RSS under 100 MiB. */
const SEQ_RATIO_TARGET = 1.5;
const RSS_TARGET_MIB = 100;
const started = performance.now();

interface Workload {
  name: string;
  write: boolean;
  sequential: boolean;
  bufSize: number;
  count: number;
  /** 1 MiB requests reach full bandwidth with a few in flight; small random ones need more to hide per-request latency. */
  depth: number;
  step: number;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** The stride (in bytes) for scattered 4 KiB writes: see the header comment. */
export function scatterStep(imageSize: number, block: number): number {
  const blocks = Math.floor(imageSize / block);
  let k = Math.round(blocks / ((1 + Math.sqrt(5)) / 2));
  while (k > 1 && gcd(k, blocks) !== 1) k++;
  return Math.max(1, k) * block;
}

function workloads(size: number, ops: number): Workload[] {
  const seq = { bufSize: MiB, count: Math.ceil(size / MiB), depth: 4, step: MiB, sequential: true };
  return [
    { name: 'seq write 1M', write: true, ...seq },
    { name: 'seq read 1M', write: false, ...seq },
    { name: 'scattered write 4K', write: true, sequential: false, bufSize: 4096, count: ops, depth: 16, step: scatterStep(size, 4096) },
  ];
}

function qemuBenchArgs(w: Workload, format: ImageFormat, path: string): string[] {
  const args = ['-f', format, '-t', 'unsafe', '-i', 'threads', '-s', String(w.bufSize), '-c', String(w.count), '-d', String(w.depth), '-S', String(w.step), '-o', '0'];
  if (w.write) args.push('-w', `--pattern=${PATTERN}`);
  return [...args, path];
}

async function qemuCreate(format: ImageFormat, path: string, size: number): Promise<void> {
  await qemuImg(['create', '-q', '-f', format, ...(format === 'qcow2' ? ['-o', `cluster_size=${CLUSTER}`] : []), path, String(size)]);
}

/**
 * A fully written image for the read workloads (contents: the pattern
 * everywhere), written by qemu-img so neither side reads its own layout;
 * blockemu writes it only when qemu-img is missing.
 */
async function prepareReadImage(format: ImageFormat, path: string, size: number, withQemu: boolean): Promise<void> {
  const count = Math.ceil(size / MiB);
  if (!withQemu) {
    const job: ImageJob = { path, format, create: { size, clusterSize: format === 'qcow2' ? CLUSTER : undefined }, write: true, bufSize: MiB, count, depth: 4, step: MiB, pattern: PATTERN };
    await runChild<ImageResult>(WORKER, job);
    return;
  }
  await qemuCreate(format, path, size);
  await qemuImgBench(['-f', format, '-t', 'unsafe', '-w', `--pattern=${PATTERN}`, '-s', String(MiB), '-c', String(count), '-d', '4', path]);
}

interface Row {
  workload: Workload;
  format: ImageFormat;
  blockemu: number[];
  qemu: number[];
  rssKiB: number[];
}

async function measure(ctx: BenchContext, dir: string, w: Workload, format: ImageFormat, size: number, withQemu: boolean): Promise<Row> {
  const row: Row = { workload: w, format, blockemu: [], qemu: [], rssKiB: [] };
  const readImage = join(dir, `read.${format}`);
  if (!w.write) await prepareReadImage(format, readImage, size, withQemu);
  const tag = `${w.name.replace(/\W+/g, '-')}-${format}`;

  const runBlockemu = async (r: number) => {
    const path = w.write ? join(dir, `blockemu-${tag}.${format}`) : readImage;
    const job: ImageJob = {
      path,
      format,
      create: w.write ? { size, clusterSize: format === 'qcow2' ? CLUSTER : undefined } : undefined,
      write: w.write,
      bufSize: w.bufSize,
      count: w.count,
      depth: w.depth,
      step: w.step,
      pattern: PATTERN,
    };
    const res = await runChild<ImageResult>(WORKER, job, { cpuProfDir: ctx.cpuProfDir, cpuProfName: `${tag}-${r + 1}` });
    // The image blockemu just wrote must be one qemu-img accepts: a fast result from a broken image is worthless.
    if (w.write && format === 'qcow2' && withQemu) await qemuImg(['check', '-q', '-f', 'qcow2', path]);
    if (w.write) await unlink(path);
    row.blockemu.push(res.seconds);
    row.rssKiB.push(res.maxRssKiB);
  };
  const runQemu = async () => {
    const path = w.write ? join(dir, `qemu-${tag}.${format}`) : readImage;
    if (w.write) await qemuCreate(format, path, size);
    row.qemu.push(await qemuImgBench(qemuBenchArgs(w, format, path)));
    if (w.write) await unlink(path);
  };

  for (let r = 0; r < ctx.runs; r++) {
    // Alternate who goes first so a drift in machine load does not always favour one side.
    if (!withQemu) await runBlockemu(r);
    else if (r % 2 === 0) await runBlockemu(r).then(runQemu);
    else await runQemu().then(() => runBlockemu(r));
    const q = row.qemu.at(-1);
    const at = ((performance.now() - started) / 1000).toFixed(0).padStart(4);
    console.error(`${at}s  ${w.name} ${format} run ${r + 1}/${ctx.runs}: blockemu ${fmtSeconds(row.blockemu.at(-1))}${withQemu ? `, qemu-img ${fmtSeconds(q)}` : ''}`);
  }
  if (!w.write) await unlink(readImage);
  return row;
}

function report(rows: Row[]): string {
  const header = ['workload', 'format', 'blockemu', 'MiB/s', 'qemu-img', 'MiB/s', 'ratio', 'best/best', 'peak RSS', 'targets'];
  const body = rows.map((row) => {
    const w = row.workload;
    const bytes = w.bufSize * w.count;
    const be = median(row.blockemu);
    const q = row.qemu.length > 0 ? median(row.qemu) : undefined;
    const ratio = q !== undefined ? be / q : undefined;
    // Fastest against fastest: on this VM page-cache write-back makes whole runs 3-5× slower at random, and the
    // minimum is the figure least touched by that; the target is still judged on the median.
    const best = row.qemu.length > 0 ? Math.min(...row.blockemu) / Math.min(...row.qemu) : undefined;
    const rssMiB = Math.max(...row.rssKiB) / 1024;
    const misses: string[] = [];
    if (w.sequential && ratio !== undefined && ratio > SEQ_RATIO_TARGET) misses.push(`time > ${SEQ_RATIO_TARGET}×`);
    if (rssMiB >= RSS_TARGET_MIB) misses.push(`RSS ≥ ${RSS_TARGET_MIB} MiB`);
    const targets = misses.length > 0 ? `MISS: ${misses.join(', ')}` : w.sequential ? 'ok' : 'ok (RSS only)';
    return [w.name, row.format, fmtSeconds(be), fmtRate(bytes, be), fmtSeconds(q), fmtRate(bytes, q), ratio === undefined ? '—' : `${ratio.toFixed(2)}×`, best === undefined ? '—' : `${best.toFixed(2)}×`, `${rssMiB.toFixed(1)} MiB`, targets];
  });
  return renderTable([header, ...body], new Set([2, 3, 4, 5, 6, 7, 8]));
}

export async function run(ctx: BenchContext): Promise<void> {
  const size = intFlag(ctx, 'size', 1024) * MiB;
  const ops = intFlag(ctx, 'ops', 65536);
  const withQemu = hasQemuImg();
  if (!withQemu) console.error('image: qemu-img not found; measuring blockemu only (install qemu-utils for the comparison)');
  const qemuVersion = withQemu ? (await qemuImg(['--version'])).split('\n')[0] : 'absent';
  const list = workloads(size, ops);
  console.error(`image: ${size / MiB} MiB images, ${ctx.runs} runs each, Node ${process.version}, ${qemuVersion}`);

  const rows = await withTempDir(async (dir) => {
    const out: Row[] = [];
    for (const w of list) for (const format of FORMATS) out.push(await measure(ctx, dir, w, format, size, withQemu));
    return out;
  });

  console.log(`\nbench image — ${size / MiB} MiB images; median of ${ctx.runs} runs; ratio = blockemu time / qemu-img time (lower is better); best/best = fastest run / fastest run`);
  console.log(report(rows));
  console.log('\nworkloads (qemu-img bench options; blockemu issues the same requests):');
  for (const w of list) {
    console.log(`  ${w.name}: ${w.write ? '-w ' : ''}-s ${w.bufSize} -c ${w.count} -d ${w.depth} -S ${w.step}, -t unsafe -i threads, no timed flush`);
  }
  console.log(`targets: sequential ≤ ${SEQ_RATIO_TARGET}× qemu-img's time; blockemu peak RSS < ${RSS_TARGET_MIB} MiB (max over runs, one process per run)`);
}
