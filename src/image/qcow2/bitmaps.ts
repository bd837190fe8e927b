import { strerrorOf } from '../errno.js';
import { BlockError, invalidImage } from '../errors.js';
import { isZero } from '../request.js';
import {
  type BitmapEntry,
  bitmapDataBytes,
  dirEntrySize,
  encodeBitmapsExt,
  encodeDirectory,
  FLAG_AUTO,
  FLAG_IN_USE,
  MAX_BITMAPS,
  MAX_DIRECTORY_SIZE,
  MAX_GRANULARITY_BITS,
  MAX_NAME_SIZE,
  MAX_PHYS_SIZE,
  MAX_TABLE_SIZE,
  MIN_GRANULARITY_BITS,
  parseDirectory,
  parseTable,
  TABLE_ALL_ONES,
  TABLE_OFFSET_MASK,
} from './bitmap-directory.js';
import { AUTOCLEAR_BITMAPS, EXT_BITMAPS, serializeHeader } from './header.js';
import type { Qcow2Image } from './image.js';

/** A bitmap as the image holds it: its bits serialised, or none when it was in use (its owner went down without storing it). */
export interface LoadedBitmap {
  name: string;
  granularity: number;
  enabled: boolean;
  inUse: boolean;
  data: Uint8Array | undefined;
}

/** A bitmap to store: serialised bits of the image's virtual size at its granularity. */
export interface BitmapToStore {
  name: string;
  granularity: number;
  enabled: boolean;
  data: Uint8Array;
}

/**
 * Persistent dirty bitmaps in a qcow2 image (block/qcow2-bitmap.c): load
 * them at open and mark them in use, store them at close, check a new one
 * can be stored, remove one. The owner of the bitmaps (a block node) keeps
 * them in memory meanwhile; this class only moves them to and from disk.
 *
 * Crash safety as the rest of the image: new data, tables and directory
 * are written and counted before the header points at them, and the old
 * ones are freed only after it no longer does. A bitmap that is loaded
 * read-write is flagged in use on disk at once, so a crash leaves it marked
 * inconsistent, never silently stale.
 */
export class BitmapStore {
  constructor(private readonly img: Qcow2Image) {}

  private get cs(): number {
    return this.img.layout.clusterSize;
  }

  /** The extension's fields; none when absent or stale (the autoclear bit cleared by a program without bitmap support). */
  private ext(): { nb: number; dirSize: number; dirOffset: number } | undefined {
    const h = this.img.header;
    const e = h.extensions.find((x) => x.type === EXT_BITMAPS);
    if (!e || (h.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) return undefined;
    const v = new DataView(e.data.buffer, e.data.byteOffset, e.data.byteLength);
    return { nb: v.getUint32(0), dirSize: Number(v.getBigUint64(8)), dirOffset: Number(v.getBigUint64(16)) };
  }

  private async directory(): Promise<BitmapEntry[]> {
    const ext = this.ext();
    if (!ext) return [];
    if (ext.dirSize === 0) throw invalidImage(this.img.filename, 'Requested bitmap directory size is zero');
    const list = parseDirectory(await this.img.file.read(ext.dirOffset, ext.dirSize), ext.nb, this.cs, this.img.size());
    if (typeof list === 'string') throw invalidImage(this.img.filename, list);
    return list;
  }

  /** qcow2_get_bitmap_info_list: the directory as it is on disk now. */
  async describe(): Promise<{ name: string; granularity: number; flags: ('in-use' | 'auto')[] }[]> {
    return (await this.directory()).map((b) => ({
      name: b.name,
      granularity: 2 ** b.granularityBits,
      flags: [...(b.flags & FLAG_IN_USE ? (['in-use'] as const) : []), ...(b.flags & FLAG_AUTO ? (['auto'] as const) : [])],
    }));
  }

  /** qcow2_load_dirty_bitmaps' reading: every bitmap, with its bits unless it is in use. */
  async load(): Promise<LoadedBitmap[]> {
    const out: LoadedBitmap[] = [];
    for (const b of await this.directory()) {
      const granularity = 2 ** b.granularityBits;
      const inUse = (b.flags & FLAG_IN_USE) !== 0;
      out.push({ name: b.name, granularity, enabled: (b.flags & FLAG_AUTO) !== 0, inUse, data: inUse ? undefined : await this.readData(b, granularity) });
    }
    return out;
  }

  private async readData(b: BitmapEntry, granularity: number): Promise<Uint8Array> {
    const bytes = bitmapDataBytes(this.img.size(), granularity);
    const fail = () => new BlockError('INVALID_IMAGE', `Could not open '${this.img.filename}': Could not read bitmap '${b.name}' from image: Invalid argument`, { errno: 'EINVAL' });
    if (Math.ceil(bytes / this.cs) !== b.tableSize) throw fail();
    const table = parseTable(await this.img.file.read(b.tableOffset, b.tableSize * 8), this.cs);
    if (!(table instanceof BigUint64Array)) throw fail();
    const data = new Uint8Array(b.tableSize * this.cs);
    for (let i = 0; i < table.length; i++) {
      const off = Number(table[i]! & TABLE_OFFSET_MASK);
      const part = data.subarray(i * this.cs, (i + 1) * this.cs);
      if (off !== 0) await this.img.file.readInto(part, off);
      else if (table[i]! & TABLE_ALL_ONES) part.fill(0xff);
    }
    return data.subarray(0, bytes);
  }

  /** A read-write open flags every consistent bitmap in use, in place (update_ext_header_and_dir_in_place). */
  async markInUse(): Promise<void> {
    const ext = this.ext();
    if (!ext) return;
    const list = await this.directory();
    if (list.every((b) => b.flags & FLAG_IN_USE)) return;
    for (const b of list) b.flags |= FLAG_IN_USE;
    await this.img.file.write(ext.dirOffset, encodeDirectory(list));
    await this.img.file.flush();
  }

  /**
   * qcow2_co_can_store_new_dirty_bitmap: why a bitmap of this name and
   * granularity cannot become persistent (given the node's other
   * persistent bitmaps), or undefined when it can.
   */
  whyCannotStore(name: string, granularity: number, otherPersistent: readonly string[]): string | undefined {
    if (this.img.version < 3) return 'Cannot store dirty bitmaps in qcow2 v2 files';
    const bits = Math.log2(granularity);
    if (bits > MAX_GRANULARITY_BITS) return `Granularity exceeds maximum (${2 ** MAX_GRANULARITY_BITS} bytes)`;
    if (bits < MIN_GRANULARITY_BITS) return `Granularity is under minimum (${2 ** MIN_GRANULARITY_BITS} bytes)`;
    const bytes = Math.ceil(Math.ceil(this.img.size() / granularity) / 8);
    if (bytes > MAX_PHYS_SIZE || bytes > MAX_TABLE_SIZE * this.cs) return 'Too much space will be occupied by the bitmap. Use larger granularity';
    if (Buffer.byteLength(name) > MAX_NAME_SIZE) return `Name length exceeds maximum (${MAX_NAME_SIZE} characters)`;
    if (otherPersistent.length + 1 > MAX_BITMAPS) return 'Maximum number of persistent bitmaps is already reached';
    const dirSize = [...otherPersistent, name].reduce((n, b) => n + dirEntrySize(b), 0);
    if (dirSize > MAX_DIRECTORY_SIZE) return 'Not enough space in the bitmap directory';
    return undefined;
  }

  /**
   * qcow2_store_persistent_dirty_bitmaps: writes each bitmap (data clusters
   * that are not all zero, then its table), a new directory that keeps the
   * entries of bitmaps not given (those in use by nobody, say), the header,
   * and frees what the old entries held.
   */
  async store(bitmaps: readonly BitmapToStore[]): Promise<void> {
    if (bitmaps.length === 0) return;
    const list = await this.directory();
    const drop: BitmapEntry[] = [];
    for (const bm of bitmaps) {
      const i = list.findIndex((b) => b.name === bm.name);
      if (i >= 0 && !(list[i]!.flags & FLAG_IN_USE)) throw new BlockError('INVALID_ARGUMENT', `Bitmap '${bm.name}' already exists in the image`);
      const { tableOffset, tableSize } = await this.writeBitmap(bm);
      const entry: BitmapEntry = { name: bm.name, tableOffset, tableSize, flags: bm.enabled ? FLAG_AUTO : 0, granularityBits: Math.log2(bm.granularity) };
      if (i >= 0) {
        drop.push(list[i]!);
        list[i] = entry;
      } else {
        list.push(entry);
      }
    }
    if (list.length > MAX_BITMAPS) throw new BlockError('INVALID_ARGUMENT', 'Too many persistent bitmaps');
    await this.replaceDirectory(list).catch(failed('Failed to update bitmap extension'));
    await this.freeBitmaps(drop);
  }

  /** qcow2_co_remove_persistent_dirty_bitmap: a bitmap not in the image is no error. */
  async remove(name: string): Promise<void> {
    const list = await this.directory();
    const i = list.findIndex((b) => b.name === name);
    if (i < 0) return;
    const [gone] = list.splice(i, 1);
    await this.replaceDirectory(list);
    await this.freeBitmaps([gone!]);
  }

  private async allocate(n: number): Promise<number> {
    const rc = this.img.refcounts!;
    return this.img.meta.run(async () => (await rc.allocate(n)) * this.cs);
  }

  private async writeBitmap(bm: BitmapToStore): Promise<{ tableOffset: number; tableSize: number }> {
    const cs = this.cs;
    const tableSize = Math.ceil(bm.data.length / cs);
    const table = new Uint8Array(Math.ceil((tableSize * 8) / cs) * cs);
    const tv = new DataView(table.buffer);
    for (let i = 0; i < tableSize; i++) {
      const part = bm.data.subarray(i * cs, (i + 1) * cs);
      if (isZero(part)) continue;
      const cluster = new Uint8Array(cs);
      cluster.set(part);
      const at = await this.allocate(1).catch(failed(`Failed to allocate clusters for bitmap '${bm.name}'`));
      await this.img.file.write(at, cluster).catch(failed(`Failed to write bitmap '${bm.name}' to file`));
      tv.setBigUint64(i * 8, BigInt(at));
    }
    const tableOffset = await this.allocate(table.length / cs).catch(failed(`Failed to allocate clusters for bitmap '${bm.name}'`));
    // Only the entries, as store_bitmap writes the table (the rest of its cluster stays a hole on disk, as QEMU's does).
    await this.img.file.write(tableOffset, table.subarray(0, tableSize * 8)).catch(failed(`Failed to write bitmap '${bm.name}' to file`));
    return { tableOffset, tableSize };
  }

  /** update_ext_header_and_dir: the new directory counted and on disk, then the header, then the old directory freed. */
  private async replaceDirectory(list: readonly BitmapEntry[]): Promise<void> {
    const img = this.img;
    const h = img.header;
    const old = this.ext();
    const others = h.extensions.filter((e) => e.type !== EXT_BITMAPS);
    if (list.length > 0) {
      const dir = encodeDirectory(list);
      const at = await this.allocate(Math.ceil(dir.length / this.cs));
      await img.file.write(at, dir);
      h.extensions = [...others, { type: EXT_BITMAPS, data: encodeBitmapsExt(list.length, dir.length, at) }];
      h.autoclearFeatures |= AUTOCLEAR_BITMAPS;
    } else {
      h.extensions = others;
      h.autoclearFeatures &= ~AUTOCLEAR_BITMAPS;
    }
    await img.flush();
    const cluster0 = new Uint8Array(this.cs);
    cluster0.set(serializeHeader(h, this.cs));
    await img.file.write(0, cluster0);
    await img.file.flush();
    if (old && old.dirSize > 0) this.freeRange(old.dirOffset, old.dirSize);
    await img.flush();
  }

  /** Queues the clusters of a byte range for freeing (applied by the next flush). */
  private freeRange(offset: number, bytes: number): void {
    const first = offset / this.cs;
    for (let c = first; c < first + Math.ceil(bytes / this.cs); c++) this.img.refcounts!.free(c);
  }

  /** free_bitmap_clusters: each table's data clusters and the table. */
  private async freeBitmaps(list: readonly BitmapEntry[]): Promise<void> {
    const rc = this.img.refcounts!;
    for (const b of list) {
      const table = parseTable(await this.img.file.read(b.tableOffset, b.tableSize * 8), this.cs);
      if (table instanceof BigUint64Array) {
        for (const e of table) {
          const off = Number(e & TABLE_OFFSET_MASK);
          if (off !== 0) rc.free(off / this.cs);
        }
      }
      this.freeRange(b.tableOffset, b.tableSize * 8);
    }
    if (list.length > 0) await this.img.flush();
  }
}

/** error_setg_errno's wording for a failed step of storing bitmaps: "what: strerror", the errno kept. */
function failed(what: string): (err: unknown) => never {
  return (err) => {
    throw new BlockError(err instanceof BlockError ? err.code : 'IO', `${what}: ${strerrorOf(err)}`, { errno: err instanceof BlockError ? err.errno : undefined, cause: err });
  };
}
