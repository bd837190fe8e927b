import { BlockError } from '../../image/errors.js';
import { bitmapDataBytes } from '../../image/qcow2/bitmap-directory.js';
import type { LoadedBitmap } from '../../image/qcow2/bitmaps.js';
import type { Qcow2Image } from '../../image/qcow2/image.js';
import type { HeldBitmap } from '../../image/types.js';

/**
 * The persistent bitmaps of an image `img resize` opens, kept as qemu-img
 * keeps them: loaded when the image opens (flagged in use on disk while it
 * is open), resized with the image, stored back when it closes. A bitmap
 * that was in use when its owner went down is inconsistent: it refuses the
 * resize and is never stored (it stays flagged, as in QEMU).
 */
export class HeldBitmaps {
  private constructor(
    private readonly img: Qcow2Image,
    private readonly loaded: LoadedBitmap[],
    /** The virtual size the loaded bits describe. */
    private readonly size: number,
  ) {}

  static async load(img: Qcow2Image): Promise<HeldBitmaps> {
    const loaded = await img.bitmaps.load();
    if (loaded.length > 0) await img.bitmaps.markInUse();
    return new HeldBitmaps(img, loaded, img.size());
  }

  /** For ResizeOptions.heldBitmap: bdrv_dirty_bitmap_check's refusal of an inconsistent bitmap, with qemu-img's hint. */
  readonly held = (name: string): HeldBitmap | undefined => {
    const b = this.loaded.find((x) => x.name === name);
    if (!b) return undefined;
    return {
      check: () => {
        if (b.inUse) throw new BlockError('INVALID_ARGUMENT', `Bitmap '${name}' is inconsistent and cannot be used\nTry block-dirty-bitmap-remove to delete this bitmap from disk`);
      },
    };
  };

  /** Stores the consistent bitmaps, their bits cut or extended to the image's size now (hbitmap_truncate). */
  async store(): Promise<void> {
    const keep = this.loaded.filter((b) => !b.inUse && b.data);
    if (keep.length === 0) return;
    const size = this.img.size();
    await this.img.bitmaps.store(keep.map((b) => ({ name: b.name, granularity: b.granularity, enabled: b.enabled, data: resizeBits(b.data!, this.size, size, b.granularity) })));
  }
}

/** Serialised bits (LSB first) for `oldSize` as bits for `newSize`: new bits clear, bits past a new end cleared. */
export function resizeBits(data: Uint8Array, oldSize: number, newSize: number, granularity: number): Uint8Array {
  if (newSize === oldSize) return data;
  const out = new Uint8Array(bitmapDataBytes(newSize, granularity));
  out.set(data.subarray(0, Math.min(data.length, out.length)));
  const bits = Math.ceil(newSize / granularity);
  if (bits % 8 !== 0) out[bits >> 3]! &= (1 << (bits % 8)) - 1;
  out.fill(0, Math.ceil(bits / 8));
  return out;
}
