/**
 * Child process for `bench image`: runs one workload through blockemu's image
 * layer and reports its time and this process's peak RSS. See bench/image.ts
 * for why the workloads look the way they do.
 */
import { performance } from 'node:perf_hooks';
import { createImage, openImage } from '../../src/image/open.js';
import type { ImageFormat } from '../../src/image/types.js';
import { childMain } from './child.js';

export interface ImageJob {
  path: string;
  format: ImageFormat;
  /** Create a fresh image first (untimed), as the write workloads need. */
  create?: { size: number; clusterSize?: number };
  write: boolean;
  /** Bytes per request, number of requests, requests in flight. */
  bufSize: number;
  count: number;
  depth: number;
  /** Request i starts at (i * step) mod image size: qemu-img bench's rule (offset 0, -S step). */
  step: number;
  /** Byte every written buffer is filled with (qemu-img bench --pattern); reads check for it. */
  pattern: number;
}

export interface ImageResult {
  seconds: number;
  /** process.resourceUsage().maxRSS: KiB on Linux. */
  maxRssKiB: number;
}

/**
 * Keeps `depth` requests in flight until `count` have been issued, starting
 * the next one as soon as any finishes. That is what qemu-img bench does
 * (its completion callback refills the queue); fixed Promise.all windows
 * would instead drain to zero at the end of every window and understate the
 * depth.
 */
async function slidingWindow(count: number, depth: number, issue: (i: number, lane: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (_: unknown, l: number) => {
    while (next < count) await issue(next++, l);
  };
  await Promise.all(Array.from({ length: Math.min(depth, count) }, lane));
}

async function runJob(job: ImageJob): Promise<ImageResult> {
  if (job.create) await createImage(job.path, { format: job.format, size: job.create.size, clusterSize: job.create.clusterSize });
  const img = await openImage(job.path, { format: job.format, readOnly: !job.write });
  let seconds: number;
  try {
    const size = img.size();
    // One buffer for every write, as qemu-img bench uses one for all its requests.
    const buf = new Uint8Array(job.bufSize).fill(job.pattern);
    // Reads: one buffer per request in flight, reused (qemu-img bench reuses its buffers too).
    const readBufs = Array.from({ length: job.depth }, () => new Uint8Array(job.bufSize));
    let bad = 0;
    const t0 = performance.now();
    await slidingWindow(job.count, job.depth, async (i, lane) => {
      const off = (i * job.step) % size;
      if (job.write) {
        await img.write(off, buf);
      } else {
        const got = readBufs[lane]!;
        await img.readInto(got, off);
        // A cheap guard that the read workload really read the data (two bytes per request).
        if (got[0] !== job.pattern || got[got.length - 1] !== job.pattern) bad++;
      }
    });
    seconds = (performance.now() - t0) / 1000;
    if (bad > 0) throw new Error(`${bad} of ${job.count} reads of '${job.path}' did not return the written pattern`);
  } finally {
    // Closing flushes; like qemu-img bench's close, it is outside the timed span.
    await img.close();
  }
  return { seconds, maxRssKiB: process.resourceUsage().maxRSS };
}

childMain(runJob);
