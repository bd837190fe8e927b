import { writeZeroes } from '../resize.js';
import { ZERO_CHUNK } from '../request.js';
import { classify, type L2Entry, subRange } from './entry.js';
import type { Qcow2Image } from './image.js';
import type { L2Editor } from './l2-editor.js';

/** What SubclusterZeroes needs from the writer: data writes under the range lock it holds, and whether bytes read as zeroes. */
export interface ZeroWriterHooks {
  writeLocked(offset: number, data: Uint8Array): Promise<void>;
  readsZero(from: number, to: number): Promise<boolean>;
  /** An external data file's host cluster an entry lets go of, to be zeroed there (Qcow2Writer.noteReleased). */
  noteReleased(e: L2Entry, into: number[]): void;
  zeroReleased(hosts: number[]): Promise<void>;
}

/** An extended entry whose every subcluster reads as zeroes. */
const ALL_ZEROES = 0xffffffff;

/**
 * Write-zeroes on an image with extended L2 entries, as the generic block
 * layer and qcow2 7.2 do it with a subcluster as the zeroing alignment:
 * the request is cut at subcluster boundaries into an unaligned head, the
 * aligned middle and an unaligned tail (bdrv_co_do_pwrite_zeroes), and
 * each piece the driver cannot zero in metadata (qcow2_co_pwrite_zeroes
 * says ENOTSUP) is written as zero data instead. In metadata, whole
 * clusters get every zero bit (qcow2_subcluster_zeroize's
 * zero_in_l2_slice) and the subclusters of a partly covered cluster theirs
 * (zero_l2_subclusters; not in a compressed cluster).
 */
export class SubclusterZeroes {
  constructor(
    private readonly img: Qcow2Image,
    private readonly l2: L2Editor,
    private readonly hooks: ZeroWriterHooks,
  ) {}

  /** Zeroes [offset, offset+length); the caller holds the range lock. */
  async zero(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    const scs = this.img.layout.subclusterSize;
    let head = offset % scs;
    const tail = (offset + length) % scs;
    for (let pos = offset, left = length; left > 0; ) {
      let n = left;
      if (head) {
        n = Math.min(left, scs - head);
        head = (head + n) % scs;
      } else if (tail && n > scs) n -= tail;
      if (!(await this.piece(pos, n, mayUnmap))) await this.writeData(pos, n);
      pos += n;
      left -= n;
    }
  }

  private async writeData(offset: number, length: number): Promise<void> {
    for (let pos = 0; pos < length; pos += ZERO_CHUNK.length) {
      await this.hooks.writeLocked(offset + pos, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, length - pos)));
    }
  }

  /** qcow2_co_pwrite_zeroes for one piece: false where QEMU's answer is ENOTSUP. */
  private async piece(offset: number, length: number, mayUnmap: boolean): Promise<boolean> {
    const img = this.img;
    const scs = img.layout.subclusterSize;
    const size = img.size();
    const head = offset % scs;
    let tail = (Math.ceil((offset + length) / scs) * scs - (offset + length)) % scs;
    if (offset + length === size) tail = 0;
    if (head || tail) {
      // A partial subcluster is zeroed in metadata only where the rest of it reads as zeroes and it holds no data.
      if (!(await this.hooks.readsZero(offset - head, offset)) || !(await this.hooks.readsZero(offset + length, Math.min(size, offset + length + tail)))) return false;
      const m = await img.meta.run(() => img.map(offset - head, scs));
      if (m.kind !== 'unallocated' && m.kind !== 'zero') return false;
      return this.zeroize(offset - head, scs, mayUnmap);
    }
    return this.zeroize(offset, length, mayUnmap);
  }

  /** qcow2_subcluster_zeroize of a subcluster-aligned range (its end may be the image's end). */
  async zeroize(offset: number, length: number, mayUnmap: boolean): Promise<boolean> {
    const img = this.img;
    const L = img.layout;
    const size = img.size();
    let end = offset + length;
    // A raw data file must read as the guest does: zeroes go there first.
    if (img.dataFileRaw) await writeZeroes(img.dataFile, offset, Math.min(end, size));
    const head = Math.min(end, L.clusterEnd(offset)) - offset;
    offset += head;
    const tail = end >= size ? 0 : end - Math.max(offset, L.clusterStart(end));
    end -= tail;
    if (head && !(await this.zeroSubclusters(offset - head, head))) return false;
    if (offset < end) {
      const released: number[] = [];
      const next = (e: L2Entry) => {
        const n = zeroedEntry(e, img.version, img.externalData, mayUnmap);
        if (n.hi !== e.hi || n.lo !== e.lo) this.hooks.noteReleased(e, released);
        return n;
      };
      await img.meta.run(() => this.l2.updateEntries(offset, L.clusterEnd(end), true, next));
      if (!img.dataFileRaw) await this.hooks.zeroReleased(released);
    }
    if (tail && !(await this.zeroSubclusters(end, tail))) return false;
    return true;
  }

  /** zero_l2_subclusters: the zero bits of the subclusters [offset, offset+length) of one cluster; false in a compressed cluster. */
  private zeroSubclusters(offset: number, length: number): Promise<boolean> {
    const img = this.img;
    const L = img.layout;
    return img.meta.run(async () => {
      const l1i = L.l1Index(offset);
      const { off, view } = this.l2.atHand(l1i) ?? (await this.l2.ready(l1i));
      const idx = L.l2Index(offset);
      const e = img.readEntry(view, idx);
      if (classify(e, img.version, img.externalData) === 'compressed') return false;
      const sc = L.subclusterIndex(offset);
      const range = subRange(sc, sc + Math.ceil(length / L.subclusterSize));
      const zero = (e.zero! | range) >>> 0;
      const alloc = (e.alloc! & ~range) >>> 0;
      if (zero !== e.zero || alloc !== e.alloc) {
        img.writeEntry(view, idx, { hi: e.hi, lo: e.lo, alloc, zero });
        img.l2Cache.markDirty(off);
      }
      return true;
    });
  }
}

/**
 * zero_in_l2_slice for an extended entry: every subcluster zero; the host
 * cluster is let go when compressed, or when unmapping is allowed.
 */
export function zeroedEntry(e: L2Entry, version: number, externalData: boolean, mayUnmap: boolean): L2Entry {
  const kind = classify(e, version, externalData);
  const unmap = kind === 'compressed' || (mayUnmap && kind === 'normal');
  return unmap ? { hi: 0, lo: 0, alloc: 0, zero: ALL_ZEROES } : { hi: e.hi, lo: e.lo, alloc: 0, zero: ALL_ZEROES };
}

/** discard_in_l2_slice for an extended entry: undefined where it stays as it is. */
export function discardedEntry(e: L2Entry, version: number, externalData: boolean, hasBacking: boolean, full: boolean): L2Entry | undefined {
  if (full) return { hi: 0, lo: 0, alloc: 0, zero: 0 };
  if (!hasBacking && classify(e, version, externalData) === 'unallocated') return undefined;
  return { hi: 0, lo: 0, alloc: 0, zero: ALL_ZEROES };
}
