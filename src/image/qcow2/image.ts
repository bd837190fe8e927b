import { unlink } from 'node:fs/promises';
import type { CreateOptions } from '../create.js';
import { BlockError } from '../errors.js';
import { strerrorOf } from '../errno.js';
import type { ByteFile } from '../byte-file.js';
import { HostFile } from '../file.js';
import { checkRequest } from '../request.js';
import { checkResizeRequest } from '../resize.js';
import type { BlockImage, Extent, ImageInfo, StatusOptions, ResizeOptions, WriteOptions, WritePiece, WriteZeroesOptions } from '../types.js';
import { createQcow2 } from './create.js';
import type { L2Entry } from './entry.js';
import { dataFileIsRaw, hasExtendedL2, type Qcow2Header } from './header.js';
import { COPIED_HI, entryHi, entryLo, entryOffset, L1_RESERVED_HI, L1_RESERVED_LO, L2_RESERVED_HI, L2_RESERVED_LO, offsetHi, offsetLo, Qcow2Layout, setEntry, viewOf } from './layout.js';
import { Mutex, RangeLocks } from './locks.js';
import { canEmptyCompletely, makeCompletelyEmpty } from './make-empty.js';
import { RefcountManager } from './refcount.js';
import { TableCache } from './table-cache.js';
import { changeBackingFile } from './backing-name.js';
import { loadImageState, loadRefcounts, prepareForReadWrite } from './open-state.js';
import { Qcow2Reader } from './reader.js';
import { Qcow2Writer } from './writer.js';
import { resizeQcow2 } from './resize.js';
import { saveVmState, vmStateOffset } from './vm-state.js';
import { describeHeader } from './describe.js';
import { BitmapStore } from './bitmaps.js';
import { mapInTable, type Mapping, unallocatedRun } from './mapping.js';
import { hex, Qcow2Corruption } from './corruption.js';
import { loadSnapshotTable } from './snapshot-table.js';
import { LazyRefcounts } from './lazy-refcounts.js';
import { metadataOverlap, OL, OL_DEFAULT, overlapsMetadata } from './overlap.js';
import type { EncryptionOptions, Qcow2Crypto } from './crypto/open.js';
import type { LuksHeader } from '../crypto/luks.js';
import type { SectorCipher } from '../crypto/sector-cipher.js';
import { readGuestData, sealGuestData } from './crypto/guest-data.js';
import { writeMetadata } from './write-back.js';
import { encryptInfo } from './crypto/info.js';
import type { CreateEncryption } from '../crypto/create.js';
import { setUpEncryption } from './crypto/setup.js';

export type { Mapping } from './mapping.js';

import { type BackingOpener, checkChainDepth, type Qcow2OpenOptions } from './open-options.js';

export { type BackingOpener, checkChainDepth, MAX_BACKING_DEPTH, type Qcow2OpenOptions } from './open-options.js';

/**
 * A qcow2 image (versions 2 and 3): its header, L1 table and caches. Guest
 * clusters map through the L1 and L2 tables; reads and block status are
 * Qcow2Reader's, writes Qcow2Writer's; metadata reaches the disk
 * only through writeMetadata, which is where the crash-safety order lives.
 */
export class Qcow2Image implements BlockImage {
  readonly format = 'qcow2' as const;
  readonly layout: Qcow2Layout;
  readonly meta = new Mutex();
  readonly ranges = new RangeLocks();
  readonly l2Cache: TableCache;
  /** The active L1 table (replaced whole when a resize grows it, see adoptL1). */
  l1: Uint8Array;
  l1View: DataView;
  readonly l1Dirty = new Set<number>();
  /** The persistent dirty bitmaps on disk (loaded and stored by the image's owner). */
  readonly bitmaps: BitmapStore = new BitmapStore(this);
  /** Lazy refcounts: whether flushes write refcount blocks now. */
  readonly lazy: LazyRefcounts;
  /** Corruption found in use (QEMU's qcow2_signal_corruption): reported, the image marked and retired. */
  readonly corruption = new Qcow2Corruption(this);
  private writer: Qcow2Writer | undefined;
  private rc: RefcountManager | undefined;
  private closing: Promise<void> | undefined;
  private readonly reader: Qcow2Reader;

  /**
   * Where guest data lives: the image's own file, or its external data file
   * (then data clusters sit at their guest offsets and are not counted).
   */
  readonly dataFile: ByteFile;
  /** An encrypted image's cipher for guest data (undefined when not encrypted, or opened for its metadata only). */
  readonly cipher: SectorCipher | undefined;
  /** A LUKS-encrypted image's header (qemu-img info shows it; amending its key slots changes it). */
  readonly luks: LuksHeader | undefined;
  /** The encrypt.* options it was opened with (a key slot added is unlocked with its key). */
  readonly encryption: EncryptionOptions | undefined;

  private constructor(
    readonly file: ByteFile,
    readonly header: Qcow2Header,
    l1: Uint8Array,
    refcounts: RefcountManager | undefined,
    private backingImage: BlockImage | undefined,
    opts: Qcow2OpenOptions,
    dataFile: ByteFile | undefined,
    crypto: Qcow2Crypto | undefined,
  ) {
    this.dataFile = dataFile ?? file;
    this.cipher = crypto?.cipher;
    this.luks = crypto?.luks;
    this.encryption = opts.encryption;
    this.layout = new Qcow2Layout(header.clusterBits, header.refcountOrder, hasExtendedL2(header));
    this.lazy = new LazyRefcounts(header, file);
    this.l1 = l1;
    this.l1View = viewOf(l1);
    const cs = this.layout.clusterSize;
    const l2Tables = Math.max(4, Math.floor((opts.l2CacheBytes ?? 4 << 20) / cs));
    this.l2Cache = new TableCache(
      file,
      cs,
      l2Tables,
      async () => {
        // An L2 table may point at clusters whose refcounts are still only in the cache (not while lazily dirty).
        if (this.lazy.accurate && (await this.refcounts?.writeBack())) await this.file.flush();
      },
      { load: 'l2_load', write: 'l2_update' },
    );
    this.reader = new Qcow2Reader(this);
    if (refcounts) this.startWriting(refcounts);
  }

  /**
   * qcow2_pre_write_overlap_check: a write of `ign`'s kind (or of guest
   * data, 0) to [offset, offset+size) that would land on other metadata
   * is a fatal corruption and is not made; a check that cannot be made
   * (a snapshot's L1 table qcow2_validate_table refuses) fails it too.
   */
  checkMetadataWrite(ign: number, offset: number, size: number): Promise<void> | undefined {
    const refuse = (hit: string | undefined) => {
      if (hit !== undefined) throw this.corruption.signal(true, `Preventing invalid write on metadata (overlaps with ${hit})`, { offset, size });
    };
    // Without the snapshots' L2 tables the check needs no read: it runs (and throws) at once, and costs a write no await.
    if (!(this.overlapCheck & ~ign & OL.INACTIVE_L2)) {
      refuse(metadataOverlap(this, offset, size, ign));
      return undefined;
    }
    return overlapsMetadata(this, offset, size, ign).then(refuse);
  }

  /** The refcounts of an image open for writing (undefined when read-only). */
  get refcounts(): RefcountManager | undefined {
    return this.rc;
  }

  private startWriting(refcounts: RefcountManager): void {
    this.rc = refcounts;
    this.writer = new Qcow2Writer(this, refcounts);
    refcounts.onCorrupt = (message) => this.corrupt(message);
    refcounts.onOverlap = (offset, size) => {
      const hit = metadataOverlap(this, offset, size);
      return hit === undefined ? undefined : this.corruption.signal(true, `Preventing invalid write on metadata (overlaps with ${hit})`, { offset, size });
    };
    refcounts.checkBlockWrite = async (offset, size) => this.checkMetadataWrite(OL.REFCOUNT_BLOCK, offset, size);
    this.l2Cache.checkWrite = async (offset, size) => this.checkMetadataWrite(OL.ACTIVE_L2, offset, size);
    refcounts.onTableMoved = (offset, n) => {
      this.header.refcountTableOffset = offset;
      this.header.refcountTableClusters = n;
    };
    this.nameFixedMetadata();
  }

  /** Tells the allocator which clusters hold the L1 and snapshot tables (see RefcountManager.setFixedMetadata). */
  private nameFixedMetadata(): void {
    const h = this.header;
    const cs = this.layout.clusterSize;
    const clusters = (off: number, bytes: number) => ({ start: Math.floor(off / cs), end: Math.ceil((off + bytes) / cs) });
    this.refcounts?.setFixedMetadata([
      { what: 'active L1 table', ...clusters(h.l1TableOffset, h.l1Size * 8) },
      ...(h.nbSnapshots > 0 ? [{ what: 'snapshot table', ...clusters(h.snapshotsOffset, Math.max(1, this.snapshotBytes)) }] : []),
      ...(h.cryptoHeader && h.cryptoHeader.length > 0 ? [{ what: 'crypto header', ...clusters(h.cryptoHeader.offset, h.cryptoHeader.length) }] : []),
    ]);
  }

  /** Bytes of the snapshot table, once read or written (else its first cluster is what the allocator guards). */
  private snapshotBytes = 0;
  /** The snapshots' L1 tables, once the table was read or written: what the overlap check guards besides the active tables. */
  snapshotL1Tables: ReadonlyArray<{ offset: number; bytes: number }> = [];
  /** What the pre-write overlap check looks at (overlap-check, QCOW2_OL_* bits; the node sets it from its options). */
  overlapCheck = OL_DEFAULT;

  /** The header on disk names a new snapshot table (snapshot-table.ts wrote it, or an open read it): the in-memory state follows. */
  noteSnapshotTable(nb: number, offset: number, bytes: number, l1Tables: ReadonlyArray<{ offset: number; bytes: number }>): void {
    this.header.nbSnapshots = nb;
    this.header.snapshotsOffset = offset;
    this.snapshotBytes = bytes;
    this.snapshotL1Tables = l1Tables;
    this.nameFixedMetadata();
  }

  /** The snapshot table's extent and the snapshots' L1 tables, in QEMU's overlap check's terms (size 0: none known). */
  get snapshotTableExtent(): { offset: number; bytes: number } {
    return { offset: this.header.snapshotsOffset, bytes: this.header.nbSnapshots > 0 ? this.snapshotBytes : 0 };
  }

  /**
   * Reads where the snapshot table and the snapshots' L1 tables lie, as
   * QEMU's open reads the table, so writes are checked against them. A
   * table that cannot be read leaves them unknown: what uses the
   * snapshots then fails with the reason.
   */
  private async learnSnapshotTables(): Promise<void> {
    if (this.header.nbSnapshots === 0) return;
    try {
      const { snapshots, bytes } = await loadSnapshotTable(this);
      this.noteSnapshotTable(snapshots.length, this.header.snapshotsOffset, bytes, snapshots.map((sn) => ({ offset: sn.l1Offset, bytes: sn.l1Size * 8 })));
    } catch {
      // Left unknown.
    }
  }

  /** Names another backing file (or none) in the header (change-backing-file, qemu-img rebase -u). */
  changeBackingFile(name: string | undefined, format: string | undefined): Promise<void> {
    this.writable();
    return changeBackingFile(this, name, format);
  }

  /**
   * An image opened read-only becomes writable (a reopen read-write: its
   * file must be writable by now): the checks and header fix-ups of a
   * read-write open, then the refcounts are loaded. An image whose dirty
   * bit is set is refused: QEMU repairs it only when opening.
   */
  async reopenReadWrite(opts: { persistentBitmaps?: boolean; refcountCacheBytes?: number } = {}): Promise<void> {
    if (this.writer) return;
    await prepareForReadWrite(this.file, this.header, this.filename, opts);
    this.startWriting(await loadRefcounts(this.file, this.header, this.filename, opts.refcountCacheBytes));
    await this.learnSnapshotTables();
  }

  /**
   * Makes `l1`, written at `offset` and already named by the header on disk,
   * the active L1 table (a grown one: qcow2_grow_l1_table). Synchronous, so
   * a lookup sees the old table or the new one, never a mix.
   */
  adoptL1(l1: Uint8Array, offset: number): void {
    this.l1 = l1;
    this.l1View = viewOf(l1);
    this.header.l1Size = l1.length / 8;
    this.header.l1TableOffset = offset;
    this.nameFixedMetadata();
  }

  get filename(): string {
    return this.file.path;
  }
  get readOnly(): boolean {
    return this.file.readOnly;
  }
  get version(): number {
    return this.header.version;
  }
  hasBacking(): boolean {
    return this.backingImage !== undefined;
  }
  /** Whether guest data lives in an external data file (has_data_file). */
  get externalData(): boolean {
    return this.dataFile !== this.file;
  }
  /** Whether that data file must also read as the guest's raw image (data_file_is_raw): zeroes are written to it too. */
  get dataFileRaw(): boolean {
    return dataFileIsRaw(this.header);
  }

  static async open(path: string, opts: Qcow2OpenOptions): Promise<Qcow2Image> {
    checkChainDepth(path, opts.depth ?? 0);
    return Qcow2Image.openFile(await HostFile.open(path, { readOnly: opts.readOnly ?? false }), opts);
  }

  /**
   * Opens an image on bytes someone else provides (a block node in the
   * daemon). The image owns `file` from here on: it is closed with the
   * image, or at once if opening fails. `opts.readOnly` must match it.
   */
  static async openFile(file: ByteFile, opts: Qcow2OpenOptions): Promise<Qcow2Image> {
    const st = await loadImageState(file, opts);
    const img = new Qcow2Image(file, st.header, st.l1, st.refcounts, st.backing, opts, st.dataFile, st.crypto);
    if (st.refcounts) await img.learnSnapshotTables();
    return img;
  }

  static async create(path: string, opts: CreateOptions, open: BackingOpener): Promise<void> {
    const { encryption, ...plain } = opts;
    if (!plain.dataFileRaw || !plain.size) await createQcow2(path, plain, (p, f) => open(p, f, 1));
    else {
      // data-file-raw: the tables must map every cluster onto the data file, so creation preallocates metadata at least (qcow2_co_create).
      await createQcow2(path, { ...plain, size: 0 }, (p, f) => open(p, f, 1));
      const img = await Qcow2Image.open(path, { openBackingImage: open });
      try {
        await img.resize(plain.size, { preallocation: 'metadata' });
      } finally {
        await img.close();
      }
    }
    if (encryption) await Qcow2Image.encryptNew(path, encryption, open);
  }

  /**
   * Encrypts a new image that holds no data yet (qcow2_co_create's last
   * step, after any preallocation and the backing file). On failure the
   * new file is removed, as qcow2_co_create_opts removes what it created.
   */
  static async encryptNew(path: string, encryption: CreateEncryption, open: BackingOpener): Promise<void> {
    try {
      const img = await Qcow2Image.open(path, { openBacking: false, openBackingImage: open });
      try {
        await setUpEncryption(img, encryption);
      } finally {
        await img.close();
      }
    } catch (err) {
      await unlink(path).catch(() => undefined);
      throw err;
    }
  }

  size(): number {
    return this.header.size;
  }

  backing(): BlockImage | undefined {
    return this.backingImage;
  }

  /**
   * Gives an image opened without a backing image one (blockdev-snapshot
   * puts an existing overlay on top of a node), or takes it away again (its
   * rollback). The header is not rewritten, as in QEMU. The caller owns
   * the backing image: closing this image does not close an attached one
   * unless it was opened with it.
   */
  attachBacking(backing: BlockImage | undefined): void {
    this.backingImage = backing;
  }

  /** Offset of the L2 table for L1 index i, 0 when unallocated. */
  l2Offset(i: number): number {
    const hi = entryHi(this.l1View, i);
    const lo = entryLo(this.l1View, i);
    // QEMU masks the offset (L1E_OFFSET_MASK) and signals an unaligned one as corruption (iotest 060); reserved bits
    // beside an aligned offset, which QEMU ignores, are refused here.
    const off = entryOffset(hi, lo);
    if (off % this.layout.clusterSize !== 0) throw this.corrupt(`L2 table offset ${hex(off)} unaligned (L1 index: ${hex(i)})`);
    if ((lo & L1_RESERVED_LO) !== 0 || (hi & L1_RESERVED_HI) !== 0) {
      throw new BlockError('INVALID_IMAGE', `'${this.filename}': L1 entry ${i} has reserved bits set; the image is corrupt`, { errno: 'EIO' });
    }
    return off;
  }

  /** A fatal corruption found by a request (see Qcow2Corruption): the error it fails with. */
  corrupt(message: string): BlockError {
    return this.corruption.signal(true, message);
  }

  /** Every request but a flush fails once a fatal corruption retired the image (QEMU's node has no driver left). */
  private live(): void {
    if (this.corruption.gone) throw this.corruption.goneError();
  }

  l1Copied(i: number): boolean {
    return (entryHi(this.l1View, i) & COPIED_HI) !== 0;
  }

  /**
   * Points L1 entry i at a new L2 table. QEMU writes the entry at once
   * (qcow2_write_l1_entry); it is written with the next flush here, but
   * l1_update is announced now, at QEMU's point in the request, so a rule
   * it arms fails the request's next I/O as QEMU's fails the L1 write.
   */
  setL1(i: number, l2Offset: number): void {
    this.file.event?.('l1_update');
    setEntry(this.l1View, i, offsetHi(l2Offset) | COPIED_HI, offsetLo(l2Offset));
    this.l1Dirty.add(i);
  }

  /**
   * Maps the run of clusters starting at `offset` that share a kind (and, for
   * normal clusters, are contiguous on the host), within one L2 table. Call
   * under the metadata mutex.
   */
  async map(offset: number, length: number): Promise<Mapping> {
    const l2off = this.l2OffsetAt(offset);
    if (l2off === 0) return unallocatedRun(this.layout, offset, length);
    return mapInTable(this, await this.l2Cache.get(l2off), l2off, offset, length);
  }

  /**
   * map() without waiting, for reads: undefined when the L2 table is not in
   * the cache. No mutex is needed: tables change in place and synchronously
   * (a writer's update never spans an await), so any moment shows whole
   * entries, and a read racing a write of the same bytes may see either.
   */
  mapCached(offset: number, length: number): Mapping | undefined {
    const l2off = this.l2OffsetAt(offset);
    if (l2off === 0) return unallocatedRun(this.layout, offset, length);
    const table = this.l2Cache.peek(l2off);
    return table && mapInTable(this, table, l2off, offset, length);
  }

  private l2OffsetAt(offset: number): number {
    const l1i = this.layout.l1Index(offset);
    return l1i < this.header.l1Size ? this.l2Offset(l1i) : 0;
  }

  /** L2 entry i of a table, with its subcluster bitmap in an image with extended entries (whose bit 0 is ignored, as QEMU ignores it). */
  readEntry(view: DataView, i: number): L2Entry {
    const ext = this.layout.extendedL2;
    const w = ext ? i * 2 : i;
    const hi = entryHi(view, w);
    const lo = entryLo(view, w);
    if ((hi & 0x40000000) === 0 && ((lo & L2_RESERVED_LO) !== 0 || (hi & L2_RESERVED_HI) !== 0)) {
      throw new BlockError('INVALID_IMAGE', `'${this.filename}': L2 entry has reserved bits set (0x${hi.toString(16).padStart(8, '0')}${lo.toString(16).padStart(8, '0')}); the image is corrupt`, { errno: 'EIO' });
    }
    return ext ? { hi, lo, alloc: entryLo(view, w + 1), zero: entryHi(view, w + 1) } : { hi, lo };
  }

  /** Sets L2 entry i; an extended one's bitmap too (clear unless `e` carries one). */
  writeEntry(view: DataView, i: number, e: L2Entry): void {
    if (!this.layout.extendedL2) return setEntry(view, i, e.hi, e.lo);
    setEntry(view, i * 2, e.hi, e.lo);
    setEntry(view, i * 2 + 1, e.zero ?? 0, e.alloc ?? 0);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRequest('read', offset, length, this.header.size);
    const out = new Uint8Array(length);
    await this.readInto(out, offset);
    return out;
  }

  /** Reads guest bytes into `out`, every byte of it written (a reused buffer is fine). */
  readInto(out: Uint8Array, offset: number): Promise<void> {
    this.live();
    return this.reader.readInto(out, offset);
  }

  /** qcow2_save_vmstate: `data` at `pos` in the VM state area past the disk (vm-state.ts). */
  saveVmState(pos: number, data: Uint8Array): Promise<void> {
    return saveVmState(this, this.writable(), pos, data);
  }

  /** qcow2_load_vmstate: `length` bytes at `pos` in the VM state area. */
  async loadVmState(pos: number, length: number): Promise<Uint8Array> {
    this.live();
    const out = new Uint8Array(length);
    await this.reader.readInto(out, vmStateOffset(this) + pos, Number.MAX_SAFE_INTEGER);
    return out;
  }

  /** Guest data from the data file at host offset `host` (guest offset `guest`), decrypted when the image is encrypted (guest-data.ts). */
  readData(dst: Uint8Array, host: number, guest: number): Promise<void> {
    // The plain image's read goes straight to the file: this is every guest read's path.
    if (this.header.cryptMethod === 0) return this.dataFile.readInto(dst, host);
    return readGuestData(this.dataFile, this.cipher, this.header.cryptMethod, dst, host, guest);
  }

  /** Guest data about to be written at host offset `host` (guest offset `guest`), whole sectors: encrypted copies when the image is encrypted. */
  sealData(bufs: Uint8Array[], host: number, guest: number): Uint8Array[] {
    return sealGuestData(this.cipher, this.header.cryptMethod, bufs, host, guest);
  }

  /** Fills dst with what a read of mapping m returns. */
  readMapped(m: Mapping, dst: Uint8Array): Promise<void> {
    return this.reader.readMapped(m, dst);
  }

  blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    this.live();
    return this.reader.blockStatus(offset, length, opts);
  }

  /** The extents that cover [offset, offset+length), in order (see Qcow2Reader.blockStatusRuns). */
  blockStatusRuns(offset: number, length: number, opts?: StatusOptions): Promise<Extent[]> {
    this.live();
    return this.reader.blockStatusRuns(offset, length, opts);
  }

  private writable(): Qcow2Writer {
    this.live();
    if (!this.writer) throw new BlockError('READ_ONLY', `Image '${this.filename}' is read-only`, { errno: 'EPERM' });
    return this.writer;
  }

  write(offset: number, data: Uint8Array, opts?: WriteOptions): Promise<void> {
    const w = this.writable();
    checkRequest('write', offset, data.length, this.header.size);
    return opts?.fua ? w.write(offset, data).then(() => this.flush()) : w.write(offset, data);
  }

  /** Adjacent pieces, data or zeroes, in offset order, as one request (see Qcow2Writer.writePieces). */
  writePieces(pieces: readonly WritePiece[]): Promise<void> {
    const w = this.writable();
    for (const p of pieces) checkRequest(p.data ? 'write' : 'write zeroes', p.offset, p.length, this.header.size);
    return w.writePieces(pieces);
  }

  /** Writes one whole guest cluster compressed (falls back to a normal write when it does not shrink). */
  writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    const w = this.writable();
    checkRequest('write', offset, data.length, this.header.size);
    return w.writeCompressed(offset, data);
  }

  writeZeroes(offset: number, length: number, opts: WriteZeroesOptions = {}): Promise<void> {
    const w = this.writable();
    checkRequest('write zeroes', offset, length, this.header.size);
    const done = w.writeZeroes(offset, length, opts.mayUnmap ?? false);
    return opts.fua ? done.then(() => this.flush()) : done;
  }

  discard(offset: number, length: number): Promise<void> {
    const w = this.writable();
    checkRequest('discard', offset, length, this.header.size);
    return w.discard(offset, length);
  }

  /**
   * bdrv_make_empty (qcow2_make_empty): every cluster unallocated, so the
   * image reads its backing file again (qemu-img commit empties the
   * committed image so) — rebuilt as a new empty image where QEMU does
   * that (make-empty.ts), else by discarding every cluster.
   */
  async makeEmpty(): Promise<void> {
    const w = this.writable();
    if (!canEmptyCompletely(this.header, this.layout)) {
      await w.discard(0, this.header.size, true);
      await this.flush();
      return;
    }
    const release = await this.ranges.acquire(0, this.layout.clusterEnd(this.header.size));
    try {
      await this.meta.run(() =>
        makeCompletelyEmpty({
          file: this.file,
          header: this.header,
          layout: this.layout,
          refblockCacheBlocks: Math.max(4, Math.floor((1 << 20) / this.layout.clusterSize)),
          emptyCaches: async () => {
            await this.writeMetadata();
            this.l2Cache.clear();
          },
          adopt: (rc, l1, l1Offset) => {
            this.startWriting(rc);
            this.adoptL1(l1, l1Offset);
            this.reader.noteFrees();
          },
          broken: () => {
            this.corruption.gone = true;
          },
        }),
      );
    } finally {
      release();
    }
  }

  /**
   * A reopen's new, empty metadata caches (qcow2_update_options_commit,
   * after qcow2_update_options_prepare wrote them out): L2 tables and
   * refcount blocks are read again from the file, which the reopen may
   * have swapped; the L1 and refcount tables stay in memory, as in QEMU.
   * Under the metadata mutex, as every table edit runs, so no allocation
   * in flight loses a change; what is still unwritten is written first,
   * and a cache whose write fails is kept.
   */
  async dropTableCaches(): Promise<void> {
    await this.meta.run(async () => {
      if (this.writer && !this.corruption.gone) await this.writeMetadata().catch(() => undefined);
      if (!this.l2Cache.hasDirty()) this.l2Cache.clear();
      this.refcounts?.dropBlockCache();
    });
  }

  /** Writes the metadata held in memory, then flushes the file (and the external data file: bdrv_co_flush goes on to every child written through). */
  async flush(): Promise<void> {
    await this.flushImageFile();
    if (this.externalData && this.writer) await this.dataFile.flush();
  }

  /** The metadata written and the image file flushed (qcow2_cache_flush: the data file is not its business). */
  private async flushImageFile(): Promise<void> {
    // A retired image writes nothing more, and its flush succeeds (bdrv_co_flush of a node without a driver).
    if (!this.writer || this.corruption.gone) return;
    await this.meta.run(async () => {
      await this.writeMetadata();
      await this.file.flush();
    });
  }

  /**
   * Writes the metadata held in memory, ordered but without the final flush
   * (QEMU's flush to the OS, qcow2_co_flush_to_os): a node does its flush
   * to disk after announcing flush_to_disk, as bdrv_co_flush does.
   */
  async writeCaches(): Promise<void> {
    if (!this.writer || this.corruption.gone) return;
    await this.meta.run(() => this.writeMetadata());
  }

  /**
   * Writes the metadata held in memory in THE crash-safety order
   * (write-back.ts), without the final flush. Call under the metadata
   * mutex (flush does; a resize, holding it, calls this between its steps).
   */
  writeMetadata(): Promise<void> {
    return writeMetadata(this, () => {
      this.reader.noteFrees();
      this.writer?.forgetCompressCursor();
    });
  }

  /**
   * Changes the virtual size as QEMU's qcow2_co_truncate does (resize.ts:
   * its checks and messages, the L1 table grown or its tail cleared, the
   * clusters past a new end freed, preallocation). Writes wait for it (it
   * holds every range) and those queued behind it see the new size; reads
   * of a cropped area still in flight must be drained by the caller first,
   * as QEMU drains the node.
   */
  async resize(newSize: number, opts: ResizeOptions = {}): Promise<void> {
    checkResizeRequest(newSize, this.readOnly);
    return resizeQcow2(this, this.writable(), newSize, opts);
  }

  async actualSize(): Promise<number> {
    return this.file.allocatedBytes();
  }

  info(): ImageInfo {
    const info = describeHeader(this.header, this.filename, this.layout);
    const encrypt = encryptInfo(this.header.cryptMethod, this.luks);
    if (encrypt && info.formatSpecific?.type === 'qcow2') info.formatSpecific = { ...info.formatSpecific, encrypt };
    return info;
  }

  /**
   * qcow2_inactivate, then the file closes: the L2 table cache is written
   * (with the refcounts it depends on) and the file flushed; if that
   * failed, the refcount block cache is tried again on its own. With
   * `report`, each failure is reported in QEMU's words ("Failed to flush
   * the L2 table cache: Input/output error") and close resolves, as
   * bdrv_close cannot fail; without it, close rejects with the first
   * failure once the file is closed. What could not be written is lost;
   * the image stays consistent (at worst leaked clusters).
   */
  close(report?: (message: string) => void): Promise<void> {
    this.closing ??= (async () => {
      let failed: unknown;
      const step = async (cache: string, flush: () => Promise<void>) => {
        try {
          await flush();
        } catch (err) {
          failed ??= err;
          report?.(`Failed to flush the ${cache}: ${strerrorOf(err)}`);
        }
      };
      try {
        await this.ranges.drain();
        // bdrv_close flushes the whole node first and ignores a failure; then qcow2_close reports its caches' own.
        if (this.externalData && this.writer) await this.dataFile.flush().catch(() => undefined);
        // qcow2_inactivate flushes the L2 table cache, then the refcount block cache; each flush writes its dirty tables
        // (an L2 table the refcounts it depends on first) and then flushes the file, which may fail with nothing dirty.
        // Tables that depend on nothing but refcounts left: the file's flush is the first step, the refcounts the second.
        const tables = !this.writer || this.corruption.gone || this.l2Cache.hasDirty() || this.l1Dirty.size > 0 || this.refcounts!.hasPendingFrees();
        await step('L2 table cache', () => (tables ? this.flushImageFile() : this.file.flush()));
        const lazilyDirty = this.writer !== undefined && !this.lazy.accurate;
        if (failed !== undefined || lazilyDirty || this.refcounts?.hasDirty()) await step('refcount block cache', () => this.flushRefcounts());
        // qcow2_inactivate marks the image clean only when both caches made it to disk.
        if (failed === undefined && lazilyDirty && !this.corruption.gone) await this.lazy.markClean(() => this.flushImageFile()).catch(() => undefined);
        await this.corruption.settled();
      } finally {
        await this.backingImage?.close();
        if (this.externalData) await this.dataFile.close();
        await this.file.close();
      }
      if (failed !== undefined && !report) throw failed;
    })();
    return this.closing;
  }

  /** The refcount blocks held in memory written, then the file flushed (qcow2_cache_flush of the refcount cache). */
  private async flushRefcounts(): Promise<void> {
    if (!this.writer || this.corruption.gone) return;
    await this.meta.run(async () => {
      await this.refcounts!.writeBack();
      await this.file.flush();
    });
  }
}


