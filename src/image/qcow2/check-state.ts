import { BlockError } from '../errors.js';
import type { ByteFile } from '../byte-file.js';
import { HDR_OFF_INCOMPAT, INCOMPAT_CORRUPT, INCOMPAT_EXTL2, type Qcow2Header } from './header.js';
import type { CheckMessage } from './check-types.js';
import type { BitmapsExt } from './check-bitmaps.js';
import type { SnapshotEntry } from './check-snapshots.js';

/** Entry masks (docs/interop/qcow2.txt), as QEMU names them. */
export const L1E_OFFSET_MASK = 0x00fffffffffffe00n;
export const L1E_RESERVED_MASK = 0x7f000000000001ffn;
export const REFT_OFFSET_MASK = 0xfffffffffffffe00n;
export const REFT_RESERVED_MASK = 0x1ffn;

/**
 * QEMU refuses I/O requests ending past BDRV_MAX_LENGTH (INT64_MAX aligned
 * down to 1 GiB): a read there is an I/O error, not a read of zeroes.
 */
const MAX_IO = (1n << 63n) - (1n << 30n);

/** Metadata kinds of QEMU's overlap check, in the order it tests them. */
export const OL = {
  MAIN_HEADER: 1,
  ACTIVE_L1: 2,
  ACTIVE_L2: 4,
  REFCOUNT_TABLE: 8,
  REFCOUNT_BLOCK: 16,
  SNAPSHOT_TABLE: 32,
  INACTIVE_L1: 64,
  INACTIVE_L2: 128,
  BITMAP_DIRECTORY: 256,
} as const;

/** Read or write outcome: the data, or the errno of the failure. */
export type IoResult<T> = T | { errno: string };

export function isErr<T>(r: IoResult<T>): r is { errno: string } {
  return typeof r === 'object' && r !== null && 'errno' in r && !(r instanceof Uint8Array);
}

function errnoOf(err: unknown): string {
  return err instanceof BlockError && err.errno !== undefined ? err.errno : 'EIO';
}

/** ranges_overlap() on [a, a+la) and [b, b+lb); empty ranges overlap nothing. */
function overlaps(a: number, la: number, b: number, lb: number): boolean {
  if (la <= 0 || lb <= 0) return false;
  return !(b + lb - 1 < a || a + la - 1 < b);
}

/**
 * What the check knows about the image while it runs: geometry, the tables
 * QEMU keeps in memory (active L1, refcount table, snapshot list), the file,
 * and the stderr messages produced so far. Every read and write of the
 * check goes through here so that reads past the end of the file, requests
 * QEMU would refuse, and host I/O errors all come back as errno values.
 */
export class CheckState {
  readonly clusterBits: number;
  readonly clusterSize: number;
  readonly l2Size: number;
  /** Extended L2 entries: 16 bytes each, the cluster descriptor then its subcluster bitmap. */
  readonly extendedL2: boolean;
  readonly refcountOrder: number;
  /** log2 of the entries in one refcount block. */
  readonly rbBits: number;
  readonly csizeShift: number;
  readonly csizeMask: number;
  readonly version: number;
  readonly virtualSize: number;

  /** Table offsets as stored (a broken header may hold values past 2^53). */
  l1Offset: bigint;
  l1Size: number;
  /** The active L1 table as loaded at open (QEMU's s->l1_table). */
  l1Table: BigUint64Array;
  reftableOffset: bigint;
  /** Refcount table entries (QEMU's s->refcount_table). */
  reftable: BigUint64Array;
  snapshots: SnapshotEntry[] = [];
  snapshotsOffset = 0n;
  snapshotsSize = 0;
  bitmaps: BitmapsExt | undefined;
  incompatible: bigint;
  fileSize: number;
  /** qcow2_signal_corruption() state: later events are suppressed, a fatal one disables the driver. */
  signaled = false;
  driverGone = false;
  messages: CheckMessage[] = [];

  constructor(
    readonly file: ByteFile,
    readonly filename: string,
    readonly header: Qcow2Header,
    readonly writable: boolean,
    fileSize: number,
    l1Table: BigUint64Array,
    reftable: BigUint64Array,
  ) {
    this.version = header.version;
    this.clusterBits = header.clusterBits;
    this.clusterSize = 2 ** header.clusterBits;
    this.extendedL2 = (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
    this.l2Size = this.clusterSize / (this.extendedL2 ? 16 : 8);
    this.refcountOrder = header.refcountOrder;
    this.rbBits = header.clusterBits + 3 - header.refcountOrder;
    this.csizeShift = 62 - (header.clusterBits - 8);
    this.csizeMask = 2 ** (header.clusterBits - 8) - 1;
    this.virtualSize = header.size;
    this.l1Offset = BigInt(header.l1TableOffset);
    this.l1Size = header.l1Size;
    this.l1Table = l1Table;
    this.reftableOffset = BigInt(header.refcountTableOffset);
    this.reftable = reftable;
    this.incompatible = header.incompatibleFeatures;
    this.fileSize = fileSize;
  }

  /** size_to_clusters() */
  clusters(bytes: number): number {
    return Math.ceil(bytes / this.clusterSize);
  }

  /** A plain stderr line (fprintf in QEMU). */
  say(text: string): void {
    this.messages.push({ text });
  }

  /** An error_report() line: the CLI puts the program name in front. */
  report(text: string): void {
    this.messages.push({ text, reported: true });
  }

  /** Reads `len` bytes; past the end of the file they are zeroes, as QEMU's file driver returns them. */
  async read(offset: number | bigint, len: number): Promise<IoResult<Uint8Array>> {
    const off = BigInt(offset);
    if (off < 0n || off > MAX_IO || BigInt(len) > MAX_IO - off) return { errno: 'EIO' };
    if (off >= BigInt(this.fileSize)) return new Uint8Array(len);
    try {
      return await this.file.read(Number(off), len);
    } catch (err) {
      return { errno: errnoOf(err) };
    }
  }

  async write(offset: number, data: Uint8Array, sync = false): Promise<IoResult<true>> {
    try {
      await this.file.write(offset, data);
      if (sync) await this.file.flush();
    } catch (err) {
      return { errno: errnoOf(err) };
    }
    this.fileSize = Math.max(this.fileSize, offset + data.length);
    return true;
  }

  async flush(): Promise<IoResult<true>> {
    try {
      await this.file.flush();
      return true;
    } catch (err) {
      return { errno: errnoOf(err) };
    }
  }

  async truncate(length: number): Promise<IoResult<true>> {
    try {
      await this.file.truncate(length);
      this.fileSize = await this.file.size();
      return true;
    } catch (err) {
      return { errno: errnoOf(err) };
    }
  }

  /** Highest refcount table index with a block (QEMU's max_refcount_table_index). */
  maxReftableIndex(): number {
    let i = this.reftable.length - 1;
    while (i > 0 && (this.reftable[i]! & REFT_OFFSET_MASK) === 0n) i--;
    return Math.max(i, 0);
  }

  /**
   * qcow2_check_metadata_overlap() with QEMU's default "cached" selection
   * (everything but inactive L2 tables): the name of the first metadata
   * structure a write to [offset, offset+size) would hit, if any.
   */
  overlap(ignore: number, offset: number, size: number): string | undefined {
    if (size === 0) return undefined;
    const chk = ~ignore & ~OL.INACTIVE_L2;
    const cs = this.clusterSize;
    if (chk & OL.MAIN_HEADER && offset < cs) return 'qcow2_header';
    // Whole clusters: metadata is allocated by clusters.
    const start = offset - (offset % cs);
    const alignedLen = Math.ceil(((offset % cs) + size) / cs) * cs;
    const hit = (o: number, l: number) => overlaps(start, alignedLen, o, l);
    if (chk & OL.ACTIVE_L1 && this.l1Size && hit(Number(this.l1Offset), this.l1Size * 8)) return 'active L1 table';
    if (chk & OL.REFCOUNT_TABLE && this.reftable.length && hit(Number(this.reftableOffset), this.reftable.length * 8)) return 'refcount table';
    if (chk & OL.SNAPSHOT_TABLE && this.snapshotsSize && hit(Number(this.snapshotsOffset), this.snapshotsSize)) return 'snapshot table';
    if (chk & OL.INACTIVE_L1) {
      for (const sn of this.snapshots) if (hit(Number(sn.l1Offset), sn.l1Size * 8)) return 'inactive L1 table';
    }
    if (chk & OL.ACTIVE_L2) {
      for (const e of this.l1Table) {
        const o = Number(e & L1E_OFFSET_MASK);
        if (o && hit(o, cs)) return 'active L2 table';
      }
    }
    if (chk & OL.REFCOUNT_BLOCK) {
      const last = this.maxReftableIndex();
      for (let i = 0; i <= last && i < this.reftable.length; i++) {
        const o = Number(this.reftable[i]! & REFT_OFFSET_MASK);
        if (o && hit(o, cs)) return 'refcount block';
      }
    }
    if (chk & OL.BITMAP_DIRECTORY && this.bitmaps && hit(this.bitmaps.dirOffset, this.bitmaps.dirSize)) return 'bitmap directory';
    return undefined;
  }

  /** qcow2_signal_corruption(): one message per image; a fatal event on a writable image marks it corrupt. */
  async signalCorruption(fatal: boolean, message: string): Promise<void> {
    const isFatal = fatal && this.writable;
    if (this.signaled && (!isFatal || (this.incompatible & INCOMPAT_CORRUPT) !== 0n)) return;
    this.say(
      isFatal
        ? `qcow2: Marking image as corrupt: ${message}; further corruption events will be suppressed`
        : `qcow2: Image is corrupt: ${message}; further non-fatal corruption events will be suppressed`,
    );
    if (isFatal) {
      this.incompatible |= INCOMPAT_CORRUPT;
      if (this.version >= 3) await this.writeIncompatible();
      this.driverGone = true;
    }
    this.signaled = true;
  }

  /** Pre-write overlap check; on a hit, signals the corruption as QEMU does and reports EIO. */
  async preWriteCheck(ignore: number, offset: number, size: number): Promise<IoResult<true>> {
    const name = this.overlap(ignore, offset, size);
    if (name === undefined) return true;
    await this.signalCorruption(true, `Preventing invalid write on metadata (overlaps with ${name})`);
    return { errno: 'EIO' };
  }

  /** Writes the incompatible feature bits (header offset 72) after flushing everything before them. */
  async writeIncompatible(): Promise<IoResult<true>> {
    const f = await this.flush();
    if (isErr(f)) return f;
    const buf = new Uint8Array(8);
    new DataView(buf.buffer).setBigUint64(0, this.incompatible);
    return this.write(HDR_OFF_INCOMPAT, buf, true);
  }
}
