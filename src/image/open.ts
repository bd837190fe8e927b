import { BlockError } from './errors.js';
import type { CreateOptions } from './create.js';
import { probeFormat } from './probe.js';
import { Qcow2Image } from './qcow2/image.js';
import { RawImage } from './raw.js';
import type { BlockImage, ImageFormat } from './types.js';

export interface OpenOptions {
  /** Probed when absent, as QEMU does. */
  format?: ImageFormat;
  readOnly?: boolean;
  /** qcow2: open the backing chain (default true). Without it, unallocated clusters read as zeroes. */
  openBacking?: boolean;
  /** Position in a backing chain (internal: bounds chain depth and loops). */
  depth?: number;
  /** qcow2: the caller keeps the image's persistent bitmaps (see Qcow2OpenOptions.persistentBitmaps). */
  persistentBitmaps?: boolean;
}

export async function openImage(path: string, opts: OpenOptions = {}): Promise<BlockImage> {
  const format = opts.format ?? (await probeFormat(path));
  switch (format) {
    case 'raw':
      return RawImage.open(path, { readOnly: opts.readOnly });
    case 'qcow2':
      return Qcow2Image.open(path, {
        readOnly: opts.readOnly,
        openBacking: opts.openBacking ?? true,
        depth: opts.depth,
        persistentBitmaps: opts.persistentBitmaps,
        openBackingImage: (p, fmt, depth) => openImage(p, { format: fmt, readOnly: true, depth }),
      });
    default:
      throw new BlockError('INVALID_ARGUMENT', `Unknown driver '${String(format)}'`);
  }
}

export async function createImage(path: string, opts: CreateOptions): Promise<void> {
  switch (opts.format) {
    case 'raw':
      if (opts.size === undefined) throw new BlockError('INVALID_ARGUMENT', 'Image creation needs a size parameter');
      return RawImage.create(path, opts.size);
    case 'qcow2':
      return Qcow2Image.create(path, opts, (p, fmt, depth) => openImage(p, { format: fmt, readOnly: true, depth }));
    default:
      throw new BlockError('INVALID_ARGUMENT', `Unknown file format '${String(opts.format)}'`);
  }
}

export const FORMATS: readonly ImageFormat[] = ['raw', 'qcow2'];
export function isFormat(s: string): s is ImageFormat {
  return (FORMATS as readonly string[]).includes(s);
}
