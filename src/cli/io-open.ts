import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createImage, isFormat } from '../image/open.js';
import type { QemuIoTarget } from '../blockdev/qemu-io/index.js';
import type { BlockImage, Preallocation, WriteOptions, WriteZeroesOptions } from '../image/types.js';
import { probedRawWarning, tryOpen } from './img/open.js';
import { type CacheMode, type IoArgs, PROG } from './io-args.js';
import { type ImageOptsPlan, parseImageOpts, planImageOpts } from './io-image-opts.js';

/**
 * Opening qemu-io's image with its command-line flags (openfile() in
 * qemu-io.c): the cache mode, the AIO mode, -s, -U and --image-opts.
 *
 * Cache modes: Node has no O_DIRECT, so cache.direct=on (none, directsync)
 * is accepted and the page cache stays in use; what remains observable is
 * kept: writethrough (qemu-io's default, and directsync) flushes every
 * write before reporting it, and unsafe (cache.no-flush) makes flush a no-op.
 * aio=native is refused without cache.direct, as file-posix does; otherwise
 * the AIO mode changes nothing in Node.
 */
const NATIVE_NEEDS_DIRECT = 'aio=native was specified, but it requires cache.direct=on, which was not specified.';

/** The image as the BlockBackend qemu-io opened sees it: its cache mode, and for -s the temporary overlay removed at close. */
class IoImage implements BlockImage {
  /** `write -c`, where the format has it (the interpreter asks for it by presence: QemuIoTarget). */
  readonly writeCompressed?: (offset: number, data: Uint8Array) => Promise<void>;

  constructor(
    private readonly inner: BlockImage,
    private readonly cache: Pick<CacheMode, 'noFlush' | 'writethrough'>,
    private readonly temporary?: string,
  ) {
    const compressed = (inner as Partial<QemuIoTarget>).writeCompressed;
    if (compressed) {
      this.writeCompressed = async (offset, data) => {
        await compressed.call(inner, offset, data);
        await this.afterWrite();
      };
    }
  }
  get format() { return this.inner.format; }
  get filename() { return this.inner.filename; }
  get readOnly() { return this.inner.readOnly; }
  size() { return this.inner.size(); }
  read(offset: number, length: number) { return this.inner.read(offset, length); }
  readInto(out: Uint8Array, offset: number) { return this.inner.readInto(out, offset); }
  async write(offset: number, data: Uint8Array, opts?: WriteOptions) {
    await this.inner.write(offset, data, opts);
    await this.afterWrite();
  }
  async writeZeroes(offset: number, length: number, opts?: WriteZeroesOptions) {
    await this.inner.writeZeroes(offset, length, opts);
    await this.afterWrite();
  }
  discard(offset: number, length: number) { return this.inner.discard(offset, length); }
  flush() { return this.cache.noFlush ? Promise.resolve() : this.inner.flush(); }
  blockStatus(offset: number, length: number) { return this.inner.blockStatus(offset, length); }
  actualSize() { return this.inner.actualSize(); }
  info() { return this.inner.info(); }
  resize(...a: Parameters<BlockImage['resize']>) { return this.inner.resize(...a); }
  /** qemu-io's `truncate` (QemuIoTarget). */
  truncate(size: number, preallocation: Preallocation) { return this.inner.resize(size, { preallocation }); }
  backing() { return this.inner.backing(); }
  async close() {
    try {
      await this.inner.close();
    } finally {
      if (this.temporary !== undefined) await unlink(this.temporary).catch(() => undefined);
    }
  }
  /** A writethrough BlockBackend flushes before completing a write (blk_aio_write with write cache off → FUA/flush). */
  private async afterWrite() {
    if (this.cache.writethrough && !this.cache.noFlush) await this.inner.flush();
  }
}

export type IoOpen = { image?: BlockImage; warnings: string[] } | { error: string; warnings: string[] };

/**
 * Opens `a.file` as qemu-io would, or says what qemu-io prints instead
 * (the text after "prog: "). Warnings are whole lines for stderr, printed first.
 */
export async function openIoImage(a: IoArgs): Promise<IoOpen> {
  const warnings: string[] = [];
  if (a.file === undefined) return { warnings };
  let plan: ImageOptsPlan = { filename: a.file, format: a.format };
  let what = `can't open device ${a.file}: `;
  if (a.imageOpts) {
    const parsed = parseImageOpts(a.file);
    warnings.push(...parsed.warnings.map((w) => `${PROG}: ${w}\n`));
    if (a.forceShare && parsed.opts.has('force-share') && parsed.opts.get('force-share') !== 'on') return { error: '-U conflicts with image options', warnings };
    what = "can't open: ";
    try {
      plan = planImageOpts(parsed.opts);
    } catch (err) {
      return { error: what + (err as Error).message, warnings };
    }
  }
  const direct = plan.direct ?? a.cache.direct;
  const cache = { noFlush: plan.noFlush ?? a.cache.noFlush, writethrough: a.cache.writethrough };
  const nativeAio = plan.nativeAio ?? a.aio === 'native';
  const readOnly = a.readOnly || plan.readOnly === true;
  if (plan.readOnly === true && !a.readOnly) return { error: `${what}Block node is read-only`, warnings };
  const forceShare = a.forceShare || plan.forceShare === true;
  // -s: the image is the read-only backing file of a temporary qcow2 (bdrv_append_temp_snapshot).
  const r = await tryOpen(plan.filename, { format: plan.format, readOnly: a.snapshot || readOnly, forceShare });
  if ('inner' in r) return { error: what + r.inner, warnings };
  let image = r.image;
  if (nativeAio && !direct) {
    await image.close();
    return { error: what + NATIVE_NEEDS_DIRECT, warnings };
  }
  if (!a.snapshot) {
    if (plan.format === undefined && image.format === 'raw' && !readOnly) warnings.push(probedRawWarning(plan.filename));
    return { image: new IoImage(image, cache), warnings };
  }
  const base = { format: image.format, size: image.size() };
  await image.close();
  const temporary = join(process.env.TMPDIR ?? tmpdir(), `vl.${randomBytes(3).toString('hex')}`);
  try {
    await createImage(temporary, { format: 'qcow2', size: base.size, backingFile: resolve(plan.filename), backingFormat: isFormat(base.format) ? base.format : undefined });
    const o = await tryOpen(temporary, { format: 'qcow2', readOnly, forceShare });
    if ('inner' in o) throw new Error(o.inner);
    image = o.image;
  } catch (err) {
    await unlink(temporary).catch(() => undefined);
    return { error: `${what}Could not create temporary overlay '${temporary}': ${(err as Error).message}`, warnings };
  }
  return { image: new IoImage(image, cache, temporary), warnings };
}
