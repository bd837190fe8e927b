import { checkRequest } from '../request.js';
import type { Extent, StatusOptions } from '../types.js';
import { zeroRun } from '../zero-scan.js';
import { decompressCluster } from './compress.js';
import { compressedRef, type L2Entry } from './entry.js';
import type { Qcow2Image } from './image.js';
import { extentOf, type Mapping } from './mapping.js';
import { detectMetadataPreallocation } from './metadata-prealloc.js';

/**
 * Everything that reads a qcow2 image through its mapping without changing
 * it: guest reads (runs read concurrently, backing image and compressed
 * clusters included) and block status. Tables are looked up without the
 * metadata mutex when cached (see Qcow2Image.mapCached). Each read is
 * announced as QEMU's qcow2_co_preadv_task announces it on bs->file:
 * read_aio for data, read_backing_aio for what the backing image answers
 * (on this image's file, not the backing image's), read_compressed.
 */
export class Qcow2Reader {
  /** The last cluster decompressed, keyed by stream offset; valid only while `freed` is unchanged. */
  private lastCompressed: { key: number; freed: number; data: Uint8Array } | undefined;
  /** Counts applied frees: after one, a stream's clusters may hold a new stream at the same offset. */
  private freed = 0;

  constructor(private readonly img: Qcow2Image) {}

  /** Frees are being applied: a compressed stream's clusters may hold another stream from now on. */
  noteFrees(): void {
    this.freed++;
  }

  /** Reads guest bytes into `out`, every byte of it written (a reused buffer is fine); `bound` past the size: the VM state area. */
  async readInto(out: Uint8Array, offset: number, bound?: number): Promise<void> {
    const img = this.img;
    checkRequest('read', offset, out.length, bound ?? img.size());
    // Runs are read concurrently (a fragmented image costs one round trip, not
    // one per run); each read gets a handler at once so a failure that comes
    // while the next run is being mapped is not an unhandled rejection.
    const reads: Promise<void>[] = [];
    let failed = false;
    for (let pos = 0; pos < out.length && !failed; ) {
      const at = offset + pos;
      const m = img.mapCached(at, out.length - pos) ?? (await img.meta.run(() => img.map(at, out.length - pos)));
      if (m.length === out.length) return this.readMapped(m, out);
      const p = this.readMapped(m, out.subarray(pos, pos + m.length));
      p.catch(() => (failed = true));
      reads.push(p);
      pos += m.length;
    }
    // Wait for every read before reporting a failure: none may write into `out` after we return.
    const results = await Promise.allSettled(reads);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  /** Fills dst with what a read of mapping m returns. */
  async readMapped(m: Mapping, dst: Uint8Array): Promise<void> {
    const img = this.img;
    switch (m.kind) {
      case 'normal':
        img.file.event?.('read_aio');
        return img.readData(dst, m.hostOffset, m.offset);
      case 'zero':
        dst.fill(0);
        return;
      case 'unallocated':
        return this.readBacking(m.offset, dst);
      case 'compressed': {
        const cluster = await this.readCompressed(m.entry);
        const inCluster = m.offset % img.layout.clusterSize;
        dst.set(cluster.subarray(inCluster, inCluster + dst.length));
        return;
      }
    }
  }

  private async readBacking(offset: number, dst: Uint8Array): Promise<void> {
    const img = this.img;
    const b = img.backing();
    if (b) img.file.event?.('read_backing_aio');
    const n = b ? Math.max(0, Math.min(dst.length, b.size() - offset)) : 0;
    if (n > 0) await b!.readInto(dst.subarray(0, n), offset);
    dst.fill(0, n);
  }

  private async readCompressed(e: L2Entry): Promise<Uint8Array> {
    const img = this.img;
    const ref = compressedRef(e, img.layout);
    const freed = this.freed;
    img.file.event?.('read_compressed');
    if (this.lastCompressed?.key === ref.offset && this.lastCompressed.freed === freed) return this.lastCompressed.data;
    const raw = await img.file.read(ref.offset, ref.length);
    const data = await decompressCluster(raw, img.layout.clusterSize, img.filename, ref.offset, img.header.compressionType);
    // A free applied meanwhile may have let a new stream overwrite what we read: use it, do not keep it.
    if (freed === this.freed) this.lastCompressed = { key: ref.offset, freed, data };
    return data;
  }

  async blockStatus(offset: number, length: number, opts: StatusOptions = {}): Promise<Extent> {
    const img = this.img;
    checkRequest('block status', offset, length, img.size());
    const want = Math.max(1, length);
    const m = img.mapCached(offset, want) ?? (await img.meta.run(() => img.map(offset, want)));
    const len = Math.min(m.length, length);
    const own = extentOf(m, offset, len, img.filename, img.backing() !== undefined, img.dataFile.path, img.header.cryptMethod !== 0);
    if (own) return this.withHostZeroes(own, opts);
    const b = img.backing()!;
    if (offset >= b.size()) return { offset, length: len, depth: 1, filename: img.filename, data: false, zero: true, allocated: false };
    const inner = await b.blockStatus(offset, Math.min(len, b.size() - offset), opts);
    return { ...inner, depth: inner.depth + 1 };
  }

  /**
   * The extents that cover [offset, offset+length), in order: what a
   * block-copy task would otherwise ask extent by extent (sixteen times a
   * MiB for a half-allocated image), answered from cached tables in one go.
   */
  async blockStatusRuns(offset: number, length: number, opts: StatusOptions = {}): Promise<Extent[]> {
    const img = this.img;
    checkRequest('block status', offset, length, img.size());
    const out: Extent[] = [];
    const hasBacking = img.backing() !== undefined;
    for (let pos = offset, end = offset + length; pos < end; ) {
      const m = img.mapCached(pos, end - pos);
      const own = m && extentOf(m, pos, m.length, img.filename, hasBacking, img.dataFile.path, img.header.cryptMethod !== 0);
      // Known not preallocated (the common case): no await per extent on a copier's path.
      const e = own ? (this.preallocated === false ? own : await this.withHostZeroes(own, opts)) : await this.blockStatus(pos, end - pos, opts);
      out.push(e);
      pos += e.length;
    }
    return out;
  }

  /** Whether the metadata was preallocated (asked once, at the first block status that could use it, as QEMU does). */
  private preallocated: boolean | Promise<boolean> | undefined;

  /**
   * bdrv_co_block_status's recursion into the file (BDRV_BLOCK_RECURSE):
   * in an image whose metadata was preallocated, a data cluster whose
   * bytes in the file are a hole reads as zeroes, and block status says
   * so (data and zero, as `qemu-img map` shows it), for the length of the
   * file's run. Looked for only where zeroes are wanted.
   */
  private async withHostZeroes(e: Extent, opts: StatusOptions): Promise<Extent> {
    if (opts.wantZero === false || !e.data || e.zero || e.hostOffset === undefined || e.length === 0) return e;
    // A failed detection is "no", as QEMU takes it.
    this.preallocated ??= detectMetadataPreallocation(this.img).then(
      (yes) => (this.preallocated = yes),
      () => (this.preallocated = false),
    );
    if (!(await this.preallocated)) return e;
    // An external data file with no host below (an export, say) is looked at instead.
    const file = this.img.dataFile;
    const run = file.allocation ? await file.allocation(e.hostOffset, e.length) : await zeroRun((buf, at) => file.readInto(buf, at), e.hostOffset, e.length);
    return { ...e, length: run.length, zero: run.zero };
  }
}
