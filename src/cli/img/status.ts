import type { BlockImage } from '../../image/types.js';

/** One run of guest bytes as qemu-img map describes it (its MapEntry). */
export interface MapEntry {
  start: number;
  length: number;
  /** Layer of the backing chain that answers (0 = the named image). */
  depth: number;
  /** Allocated in that layer (qemu's BDRV_BLOCK_ALLOCATED). */
  present: boolean;
  zero: boolean;
  data: boolean;
  /** Host offset in the answering layer's file, when the data lives at one place there. */
  offset?: number;
  /** Name (as qemu-img shows it) of the file holding `offset`. */
  filename?: string;
  /** Unallocated down to a layer whose backing file ends before this run (reads as zeroes). */
  beyondBacking?: boolean;
}

/**
 * Block status of the chain under `top` at `offset`, the way qemu-img's map
 * walks the chain: it stops at the first layer that is allocated *or* that
 * reads as zeroes by itself — a layer with no backing file, or whose backing
 * file ends before `offset`. The image layer instead reports the layer that
 * finally answers, so an unallocated run's depth is recomputed here.
 * `names[k]` is the shown name of layer k.
 */
export async function chainStatus(top: BlockImage, names: string[], offset: number, maxLength: number): Promise<MapEntry> {
  const ext = await top.blockStatus(offset, maxLength);
  let depth = ext.depth;
  let beyondBacking = false;
  if (!ext.allocated) {
    let layer: BlockImage = top;
    for (let k = 0; ; k++) {
      const below = layer.backing();
      if (!below || offset >= below.size() || k >= ext.depth) {
        depth = k;
        beyondBacking = below !== undefined && offset >= below.size();
        break;
      }
      layer = below;
    }
  }
  const e: MapEntry = { start: offset, length: ext.length, depth, present: ext.allocated, zero: ext.zero, data: ext.data };
  if (beyondBacking) e.beyondBacking = true;
  // A layer that reads as neither data nor zeroes and has nothing below ends the walk with a status of 0: no offset
  // (an NBD export's hole that is not zero, iotest nbd-qemu-allocation).
  if (ext.hostOffset !== undefined && (ext.data || ext.zero)) {
    e.offset = ext.hostOffset;
    // The layer's name as the chain was opened, unless its data lies in an external data file (named by itself).
    e.filename = ext.filename !== layerAt(top, depth)?.filename ? ext.filename : (names[depth] ?? ext.filename);
  }
  return e;
}

function layerAt(top: BlockImage, depth: number): BlockImage | undefined {
  let layer: BlockImage | undefined = top;
  for (let k = 0; k < depth && layer; k++) layer = layer.backing();
  return layer;
}

/** Whether `next` continues `curr` as one qemu-img map line (qemu's rule for merging entries). */
export function mergeable(curr: MapEntry, next: MapEntry): boolean {
  if (curr.length === 0) return false;
  if (curr.zero !== next.zero || curr.data !== next.data || curr.depth !== next.depth || curr.present !== next.present) return false;
  if ((curr.offset === undefined) !== (next.offset === undefined)) return false;
  if (curr.filename !== next.filename) return false;
  if (curr.offset !== undefined && curr.offset + curr.length !== next.offset) return false;
  return true;
}

/**
 * Remembers the last run of one image so a caller walking it in small steps
 * asks the image again only past the run's end. A raw image finds a run by
 * reading it; asking at every step would read it over and over.
 */
export class StatusCursor {
  private last: MapEntry | undefined;

  constructor(
    private readonly img: BlockImage,
    private readonly names: string[],
  ) {}

  async at(offset: number, maxLength: number): Promise<MapEntry> {
    const l = this.last;
    if (!l || offset < l.start || offset >= l.start + l.length) {
      this.last = await chainStatus(this.img, this.names, offset, maxLength);
      return this.last;
    }
    const skip = offset - l.start;
    const e: MapEntry = { ...l, start: offset, length: Math.min(l.length - skip, maxLength) };
    if (l.offset !== undefined) e.offset = l.offset + skip;
    return e;
  }
}
