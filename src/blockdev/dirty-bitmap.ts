import { BlockError } from '../image/errors.js';
import { ChunkBitmap } from './bitmap.js';

/** QEMU's BDRV_BITMAP_MAX_NAME_SIZE. */
export const BITMAP_MAX_NAME_SIZE = 1023;

/** What an operation needs of a bitmap (QEMU's BDRV_BITMAP_* check flags). */
export enum BitmapCheck {
  Busy = 1,
  ReadOnly = 2,
  Inconsistent = 4,
  /** Modifying the bitmap's bits: none of the above may hold. */
  Default = 7,
  /** Changing its recording state only: a read-only bitmap is fine. */
  AllowReadOnly = 5,
}

const fail = (msg: string) => new BlockError('INVALID_ARGUMENT', msg);

/**
 * A dirty bitmap on a node (QEMU's BdrvDirtyBitmap): which bytes changed
 * since it was created or cleared. Disabled bitmaps stop recording. A job
 * that uses a bitmap marks it busy; backup also freezes it by installing
 * a successor that records in its place (createSuccessor), and at the end
 * either hands its name to the successor (abdicate) or takes the
 * successor's bits back (reclaim).
 */
export class DirtyBitmap {
  bits: ChunkBitmap;
  disabled = false;
  busy = false;
  persistent = false;
  /** Loaded from an image opened read-only: may not be modified. */
  readOnly = false;
  /** Loaded from an image whose bitmap was in use when it went down. */
  inconsistent = false;
  successor: DirtyBitmap | undefined;

  constructor(
    readonly owner: NodeBitmaps,
    public name: string | undefined,
    size: number,
    readonly granularity: number,
    bits?: ChunkBitmap,
  ) {
    this.bits = bits ?? new ChunkBitmap(size, granularity);
  }

  get size(): number {
    return this.bits.size;
  }
  /** Dirty bytes (BlockDirtyInfo.count). */
  get count(): number {
    return this.bits.dirtyBytes;
  }
  /** Whether writes reach it or its successor (BlockDirtyInfo.recording). */
  get recording(): boolean {
    return !this.disabled || (this.successor !== undefined && !this.successor.disabled);
  }

  /** Refuses as bdrv_dirty_bitmap_check does, in its order. */
  check(flags: BitmapCheck): void {
    if (flags & BitmapCheck.Busy && this.busy) throw fail(`Bitmap '${this.name}' is currently in use by another operation and cannot be used`);
    if (flags & BitmapCheck.ReadOnly && this.readOnly) throw fail(`Bitmap '${this.name}' is readonly and cannot be modified`);
    if (flags & BitmapCheck.Inconsistent && this.inconsistent) throw fail(`Bitmap '${this.name}' is inconsistent and cannot be used`);
  }

  /** Told of every write it records (a mirror in sync wakes up to copy it). */
  onMark: (() => void) | undefined;

  /** Marks a completed write (only an enabled bitmap records). */
  mark(offset: number, length: number): void {
    if (this.disabled) return;
    this.bits.setRange(offset, length);
    this.onMark?.();
  }

  /** Clears every bit; returns the old bits so an aborted transaction can put them back (restore). */
  clear(): ChunkBitmap {
    const backup = this.bits;
    this.bits = new ChunkBitmap(backup.size, backup.granularity);
    return backup;
  }

  /** Puts back the bits clear() or merge() returned. */
  restore(backup: ChunkBitmap): void {
    this.bits = backup;
  }

  /** What bdrv_merge_dirty_bitmap checks before merging `src` into this bitmap. */
  checkMergeSource(src: DirtyBitmap): void {
    this.check(BitmapCheck.Default);
    src.check(BitmapCheck.AllowReadOnly);
    if (src.size !== this.size) {
      throw fail(`Bitmaps are of different sizes (destination size is ${this.size}, source size is ${src.size}) and can't be merged`);
    }
  }

  /**
   * ORs the sources into this bitmap after checking all of them; returns
   * the previous bits for restore(). Nothing changes when a check fails.
   */
  merge(sources: readonly DirtyBitmap[]): ChunkBitmap {
    for (const src of sources) this.checkMergeSource(src);
    const backup = this.bits.clone();
    for (const src of sources) this.bits.mergeAny(src.bits);
    return backup;
  }

  /** Freezes the bitmap for a job: an anonymous successor records new writes in its place. */
  createSuccessor(): DirtyBitmap {
    this.check(BitmapCheck.Busy);
    if (this.successor) throw fail('Cannot create a successor for a bitmap that already has one');
    const child = this.owner.create(undefined, this.granularity);
    child.disabled = this.disabled;
    this.disabled = true;
    this.successor = child;
    this.busy = true;
    return child;
  }

  /** The job succeeded: the successor takes this bitmap's name and place; this one goes. */
  abdicate(): DirtyBitmap {
    const succ = this.successor;
    if (!succ) throw fail("Cannot relinquish control if there's no successor present");
    succ.name = this.name;
    succ.persistent = this.persistent;
    this.name = undefined;
    this.persistent = false;
    this.successor = undefined;
    this.busy = false;
    this.owner.release(this);
    return succ;
  }

  /** The job failed: the successor's bits come back into this bitmap, which records again. */
  reclaim(): DirtyBitmap {
    const succ = this.successor;
    if (!succ) throw fail('Cannot reclaim a successor when none is present');
    this.bits.mergeAny(succ.bits);
    this.disabled = succ.disabled;
    this.busy = false;
    this.owner.release(succ);
    this.successor = undefined;
    return this;
  }
}

/** The bitmaps of one node, newest first (the order QEMU lists them in). */
export class NodeBitmaps {
  private list: DirtyBitmap[] = [];

  constructor(private readonly size: () => number) {}

  all(): readonly DirtyBitmap[] {
    return this.list;
  }

  find(name: string): DirtyBitmap | undefined {
    return this.list.find((b) => b.name === name);
  }

  /** Finds a named bitmap or refuses as block_dirty_bitmap_lookup does. */
  lookup(name: string): DirtyBitmap {
    const b = this.find(name);
    if (!b) throw new BlockError('NOT_FOUND', `Dirty bitmap '${name}' not found`);
    return b;
  }

  /** The node's size changed (bdrv_dirty_bitmap_truncate): every bitmap, successors too, follows it. */
  truncate(size: number): void {
    for (const b of this.list) {
      for (let x: DirtyBitmap | undefined = b; x; x = x.successor) if (x.bits.size !== size) x.bits = x.bits.resized(size);
    }
  }

  /** Creates a bitmap (bdrv_create_dirty_bitmap); an anonymous one (a job's) has no name. */
  create(name: string | undefined, granularity: number): DirtyBitmap {
    if (name !== undefined) {
      if (this.find(name)) throw fail(`Bitmap already exists: ${name}`);
      if (Buffer.byteLength(name) > BITMAP_MAX_NAME_SIZE) throw fail(`Bitmap name too long: ${name}`);
    }
    const b = new DirtyBitmap(this, name, this.size(), granularity);
    this.list.unshift(b);
    return b;
  }

  /**
   * Lists a job's internal bitmap (block-copy's copy bitmap) as an
   * anonymous, disabled bitmap of the node, as QEMU 7.2 shows it in
   * query-named-block-nodes while the job runs. The caller releases it.
   */
  attach(bits: ChunkBitmap, recording = false): DirtyBitmap {
    const b = new DirtyBitmap(this, undefined, bits.size, bits.granularity, bits);
    // A mirror's bitmap records the writes it must copy again; block-copy's only shrinks.
    b.disabled = !recording;
    this.list.unshift(b);
    return b;
  }

  /** Drops a bitmap (no checks: callers check busy/read-only first, as QEMU's callers do). */
  release(b: DirtyBitmap): void {
    const i = this.list.indexOf(b);
    if (i >= 0) this.list.splice(i, 1);
  }

  /** Puts a released bitmap back where it was (a transaction's abort of a remove). */
  reinsert(b: DirtyBitmap, index: number): void {
    this.list.splice(Math.min(index, this.list.length), 0, b);
  }

  indexOf(b: DirtyBitmap): number {
    return this.list.indexOf(b);
  }

  /** bdrv_set_dirty: a completed write, zero write or discard marks every enabled bitmap. */
  mark(offset: number, length: number): void {
    for (const b of this.list) b.mark(offset, length);
  }
}
