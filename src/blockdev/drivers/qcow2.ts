import type { VmStateArea } from '../vm-state.js';
import type { EncryptionOptions } from '../../image/qcow2/crypto/open.js';
import { BlockError } from '../../image/errors.js';
import { strerrorOf } from '../../image/errno.js';
import { isZero } from '../../image/request.js';
import type { LoadedBitmap } from '../../image/qcow2/bitmaps.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { listSnapshots } from '../../image/qcow2/snapshots.js';
import { NO_ICOUNT } from '../../image/qcow2/snapshot-table.js';
import type { Extent, Preallocation, StatusOptions, WritePiece } from '../../image/types.js';
import type { NodeChild } from '../child.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type WriteFlags, type ZeroFlags } from '../node.js';
import { NodeByteFile } from '../node-file.js';
import { NodeImage } from '../node-image.js';
import { ChunkBitmap } from '../bitmap.js';
import { BitmapCheck } from '../dirty-bitmap.js';
import { RequestFence } from '../request-fence.js';
import { absorb, extractSub, type Options } from '../options.js';
import type { ReopenState, StagedReopen } from '../reopen-driver.js';
import { checkQcow2Options, joinQcow2Options, QCOW2_OPTIONS } from './qcow2-options.js';

/** A prefetch copies at most this much at a time (QEMU's bounce buffer is bounded too). */
const PREFETCH_CHUNK = 1 << 20;

/** qcow2's only strong option is an encryption secret, which blockemu does not take. */
const QCOW2_NAMING: NamePolicy = { protocol: false, strong: ['encrypt.key-secret'] };

/** How the opener gets the backing child once the header names (or not) a backing file. */
export type BackingOpener = (header: { backingFile?: string; backingFormat?: string; filename: string }) => Promise<NodeChild | undefined>;

/**
 * The `qcow2` format driver: a Qcow2Image whose bytes come from the `file`
 * child node and whose backing image is the `backing` child node (the
 * image named in the header, opened as nodes of the graph, or the node the
 * `backing` option names; none with `backing: null`).
 */
/** How the node's `data-file` child is linked: the one its options give, else the file the image header names. */
export interface DataFileOpener {
  given?: () => Promise<NodeChild>;
  byName: (name: string) => Promise<NodeChild>;
}

export class Qcow2Node extends BlockNode {
  readonly driver = 'qcow2';

  private constructor(
    name: string,
    /** Replaced when the node is activated: the image is read again from the file another process has let go of. */
    public image: Qcow2Image,
    private file: BlockNode,
    readOnly: boolean,
    links: NodeChild[],
  ) {
    super(name, readOnly, links);
  }

  /**
   * Opens the image on its (already linked) file child, then its backing
   * child as the header or the options say, then its persistent bitmaps.
   */
  static async open(name: string, fileLink: NodeChild, readOnly: boolean, backing: BackingOpener, options: Options = {}, data?: DataFileOpener, encryption?: EncryptionOptions): Promise<Qcow2Node> {
    const file = fileLink.node;
    let dataLink: NodeChild | undefined;
    const dataFile = async (link: NodeChild) => {
      dataLink = link;
      return new NodeByteFile(link.node, (await link.node.imageInfo()).filename);
    };
    const filename = (await file.imageInfo()).filename;
    // The image layer speaks like qemu-img ("Could not open 'f': …"); a node's open error is just the reason, as QEMU's.
    const reason = (err: unknown) =>
      err instanceof BlockError && err.message.startsWith(`Could not open '${filename}': `)
        ? new BlockError(err.code, err.message.slice(`Could not open '${filename}': `.length), { errno: err.errno, cause: err })
        : err;
    // An inactive file (an incoming migration's) is another process's: the image is only read from it.
    const imageReadOnly = readOnly || file.inactive;
    let image: Qcow2Image;
    try {
      image = await Qcow2Image.openFile(new NodeByteFile(file, filename), {
        readOnly: imageReadOnly,
        persistentBitmaps: true,
        givenDataFile: data?.given && (async () => dataFile(await data.given!())),
        openDataFile: data && (async (n) => dataFile(await data.byName(n))),
        openBacking: false,
        openBackingImage: () => Promise.reject(new BlockError('UNSUPPORTED', 'backing images are nodes of the graph')),
        ...(encryption ? { encryption } : {}),
      });
    } catch (err) {
      throw reason(err);
    }
    let backingLink: NodeChild | undefined;
    let loaded: LoadedBitmap[];
    try {
      const h = image.info();
      // qcow2_do_open checks its options once the header is read, before any backing file is opened.
      const runtime = checkQcow2RuntimeOptions(image, { ...options });
      image.lazy.enabled = runtime.lazyRefcounts;
      image.overlapCheck = runtime.overlapCheck;
      backingLink = await backing({ backingFile: h.backingFilename, backingFormat: h.backingFormat, filename });
      if (backingLink) image.attachBacking(await NodeImage.of(backingLink.node));
      // qcow2_load_dirty_bitmaps, before the node exists: a bad directory fails the open and leaves nothing behind.
      loaded = await image.bitmaps.load();
      if (!imageReadOnly && loaded.length > 0) await image.bitmaps.markInUse();
    } catch (err) {
      await image.close();
      throw reason(err);
    }
    // QEMU's child order: file, data-file (qcow2_do_open), backing (opened after the driver).
    const links = [fileLink, ...(dataLink ? [dataLink] : []), ...(backingLink ? [backingLink] : [])];
    const node = new Qcow2Node(name, image, file, readOnly, links);
    node.encryption = encryption;
    image.corruption.onReport = (r) => node.eventSink?.({ kind: 'image-corrupted', node, ...r });
    // The header's name, or the name of the image opened from it (bdrv_open_backing_file's implicit_backing).
    node.autoBackingFile = backingLink?.implicitName ?? image.info().backingFilename ?? '';
    if (backingLink?.implicitName !== undefined) node.autoBackingNode = backingLink.node;
    node.adoptBitmaps(loaded);
    return node;
  }

  /**
   * The image's bitmaps become the node's, in directory order (so listed
   * newest first, as QEMU lists them). One that was in use when its owner
   * went down is inconsistent; on a read-only image all are read-only.
   */
  private adoptBitmaps(loaded: readonly LoadedBitmap[]): void {
    for (const l of loaded) {
      const b = this.dirtyBitmaps.create(l.name, l.granularity);
      b.persistent = true;
      // An inconsistent bitmap records nothing (bdrv_dirty_bitmap_set_inconsistent disables it).
      b.disabled = !l.enabled || l.inUse;
      b.inconsistent = l.inUse;
      b.readOnly = this.readOnly;
      if (l.data) b.bits = ChunkBitmap.deserialize(this.size(), l.granularity, l.data);
    }
  }

  /**
   * Why a bitmap cannot become persistent here
   * (qcow2_co_can_store_new_dirty_bitmap), or undefined. A name in use is
   * refused before the checks (by the generic "already exists").
   */
  whyCannotStoreBitmap(name: string, granularity: number): string | undefined {
    const others = this.dirtyBitmaps.all().filter((b) => b.persistent && b.name !== undefined);
    return this.image.bitmaps.whyCannotStore(name, granularity, others.map((b) => b.name!));
  }

  /** Removes a persistent bitmap from the image at once, as QEMU does (a bitmap never stored is no error). */
  async removeStoredBitmap(name: string): Promise<void> {
    await this.image.bitmaps.remove(name);
  }

  override get namePolicy(): NamePolicy {
    return QCOW2_NAMING;
  }

  size(): number {
    return this.image.size();
  }
  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.image.read(offset, length);
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.image.readInto(buf, offset);
  }
  /** qcow2 cannot write with FUA itself: the generic write emulates it with a flush (BlockNode.supportsFua). */
  protected doWrite(offset: number, data: Uint8Array, _flags: WriteFlags): Promise<void> {
    return this.changing(offset, data.length, () => this.image.write(offset, data));
  }
  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    if (flags.noFallback) await this.checkFastZero(offset, length);
    await this.changing(offset, length, () => this.image.writeZeroes(offset, length, { mayUnmap: flags.mayUnmap ?? false }));
  }
  protected doDiscard(offset: number, length: number): Promise<void> {
    return this.changing(offset, length, () => this.image.discard(offset, length));
  }
  /** qcow2_make_empty: writes of every kind wait, and the whole image is unallocated under them. */
  override makeEmpty(): Promise<void> {
    this.checkWritable();
    return this.changing(0, this.size(), () => this.image.makeEmpty());
  }
  protected override doWritePieces(pieces: readonly WritePiece[]): Promise<void> {
    const start = pieces[0]!.offset;
    const last = pieces[pieces.length - 1]!;
    return this.changing(start, last.offset + last.length - start, () => this.image.writePieces(pieces));
  }

  /**
   * qcow2_co_pwrite_zeroes zeroes whole clusters only; a partial cluster at
   * either end is fine if it reads as zero already, else it would need
   * zero buffers written, which BDRV_REQ_NO_FALLBACK forbids: ENOTSUP.
   */
  private async checkFastZero(offset: number, length: number): Promise<void> {
    const cs = this.image.layout.clusterSize;
    const end = offset + length;
    const edges = [offset % cs ? Math.floor(offset / cs) * cs : -1, end % cs ? Math.floor(end / cs) * cs : -1];
    for (const c of new Set(edges)) {
      if (c < 0) continue;
      const len = Math.min(cs, this.size() - c);
      const st = await this.image.blockStatus(c, len, { wantZero: false });
      if (!st.zero || st.length < len) throw new BlockError('UNSUPPORTED', 'write zeroes would need a fallback', { errno: 'ENOTSUP' });
    }
  }

  /** Guest writes, zero writes and discards, and copy-on-read prefetches: each waits for the other kind where they overlap. */
  private readonly fence = new RequestFence();

  private changing<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T> {
    return this.fence.run('write', offset, length, fn);
  }

  /**
   * Copy-on-read (bdrv_co_do_copy_on_readv with PREFETCH): the clusters of
   * the range that this image does not allocate are read through its
   * backing chain and stored here, as zero clusters where they read as
   * zero. Like QEMU's, these writes change no byte a reader sees, so they
   * pass no copy-before-write hook and mark no bitmap. A prefetch and an
   * overlapping guest write never run at once, so stale data can never
   * land over a new write.
   */
  override async prefetch(offset: number, length: number): Promise<void> {
    if (this.readOnly) return;
    const cs = this.image.layout.clusterSize;
    const start = Math.floor(offset / cs) * cs;
    const end = Math.min(this.size(), Math.ceil((offset + length) / cs) * cs);
    await this.fence.run('prefetch', start, end - start, async () => {
      for (let at = start; at < end; ) {
        const st = await this.image.blockStatus(at, Math.min(end - at, PREFETCH_CHUNK), { wantZero: false });
        const len = Math.min(Math.max(st.length, 1), end - at);
        if (st.depth > 0 || !st.allocated) {
          const buf = new Uint8Array(len);
          await this.image.readInto(buf, at);
          if (isZero(buf)) await this.image.writeZeroes(at, len, { mayUnmap: false });
          else await this.image.write(at, buf);
        }
        at += len;
      }
    });
  }
  /** qcow2_co_flush_to_os: the tables held in memory go to the file. */
  protected override doFlushToOs(): Promise<void> {
    return this.image.writeCaches();
  }
  /** Anything left in memory (written meanwhile), then the file's flush. */
  protected doFlush(): Promise<void> {
    return this.image.flush();
  }
  blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    return this.image.blockStatus(offset, length, opts);
  }
  override blockStatusRuns(offset: number, length: number, opts?: StatusOptions): Promise<Extent[]> {
    return this.image.blockStatusRuns(offset, length, opts);
  }
  /** The image's bytes and backing image follow the graph: its file is read through the new node, its backing image is the new node. */
  override async childReplaced(c: NodeChild, node: BlockNode): Promise<void> {
    if (c.name === 'file') {
      this.file = node;
      (this.image.file as NodeByteFile).retarget(node);
    } else if (c.name === 'backing') {
      this.image.attachBacking(await NodeImage.of(node));
    }
  }

  /** The backing child came or went (blockdev-snapshot, its rollback, blockdev-reopen): the image reads through to it, or to nothing. */
  override async backingChanged(node: BlockNode | undefined): Promise<void> {
    this.image.attachBacking(node ? await NodeImage.of(node) : undefined);
  }

  override get supportsBacking(): boolean {
    return true;
  }

  override get ejected(): boolean {
    return this.image.corruption.gone;
  }

  /**
   * qcow2_co_truncate on the image; persistent bitmaps held by the node are
   * checked by it (an inconsistent one refuses), and resized with the node.
   */
  protected override async doResize(newSize: number, prealloc: Preallocation): Promise<void> {
    await this.image.resize(newSize, {
      preallocation: prealloc,
      heldBitmap: (name) => {
        const b = this.dirtyBitmaps.find(name);
        return b && { check: () => b.check(BitmapCheck.Default) };
      },
      warn: (message) => process.emitWarning(message, 'BlockemuWarning'),
    });
  }

  /** The header names another backing file; the backing child stays as it is (bdrv_change_backing_file). */
  override async changeBackingFile(name: string | undefined, format: string | undefined): Promise<void> {
    await this.image.changeBackingFile(name, format);
    this.autoBackingFile = name ?? '';
    this.autoBackingNode = undefined;
  }

  /** qcow2 keeps saved VM state past the disk, in its own clusters (qemu-io's write -b / read -b). */
  readonly vmStateArea: VmStateArea = {
    saveVmState: (pos, data) => {
      this.checkWritable();
      return this.image.saveVmState(pos, data);
    },
    loadVmState: (pos, length) => this.image.loadVmState(pos, length),
  };

  override get supportsCompressedWrites(): boolean {
    return true;
  }
  /** Writes one whole cluster compressed (qemu-io's write -c, backup's compress). */
  protected override doWriteCompressed(offset: number, data: Uint8Array): Promise<void> {
    return this.image.writeCompressed(offset, data);
  }
  info(): { clusterSize: number } {
    return { clusterSize: this.image.layout.clusterSize };
  }

  async imageInfo(): Promise<NodeImageInfo> {
    const i = this.image.info();
    const f = await this.file.imageInfo();
    const out: NodeImageInfo = { ...i, actualSize: f.actualSize };
    const snapshots = await listSnapshots(this.image);
    if (snapshots.length > 0) {
      out.snapshots = snapshots.map((sn) => ({
        id: sn.id,
        name: sn.name,
        vmStateSize: Number(sn.vmStateSize),
        dateSec: sn.dateSec,
        dateNsec: sn.dateNsec,
        vmClockNsec: sn.vmClockNsec,
        ...(sn.icount !== NO_ICOUNT ? { icount: BigInt.asIntN(64, sn.icount) } : {}),
      }));
    }
    const bitmaps = await this.image.bitmaps.describe();
    if (bitmaps.length > 0 && out.formatSpecific?.type === 'qcow2') out.formatSpecific = { ...out.formatSpecific, bitmaps };
    // The header's backing file only (bs->backing_file): a backing node given at run time (blockdev-snapshot, a reopen) is not named here.
    return out;
  }

  /** Writes the persistent bitmaps that may change into the image (qcow2_store_persistent_dirty_bitmaps). */
  private async storeBitmaps(): Promise<void> {
    const keep = this.dirtyBitmaps.all().filter((b) => b.persistent && !b.inconsistent && !b.readOnly && b.name !== undefined);
    await this.image.bitmaps.store(keep.map((b) => ({ name: b.name!, granularity: b.granularity, enabled: !b.disabled, data: b.bits.serialize() })));
  }

  override get mutableOptions(): readonly string[] {
    return QCOW2_OPTIONS;
  }

  override joinReopenOptions(options: Options, old: Options): void {
    joinQcow2Options(options, old);
  }

  /**
   * qcow2_reopen_prepare: the qcow2 options are taken and checked (encrypt.*
   * too); going read-only, the persistent bitmaps are stored now and become
   * read-only (qcow2_reopen_bitmaps_ro: as in QEMU they stay so if the
   * reopen is then abandoned, and the node refuses writes until a reopen
   * read-write), and the node is flushed. Going read-write, the image and
   * its bitmaps become writable only once the file is (commitPost:
   * qcow2_reopen_bitmaps_rw), and a failure there is only reported.
   */
  override async prepareReopen(state: ReopenState): Promise<StagedReopen> {
    const { lazyRefcounts, overlapCheck } = checkQcow2RuntimeOptions(this.image, state.options);
    // qcow2_update_options_prepare: turning lazy refcounts off writes them out and marks the image clean first.
    if (this.image.lazy.enabled && !lazyRefcounts) {
      await this.image.lazy.markClean(() => this.image.flush()).catch((err: unknown) => {
        throw new BlockError('IO', `Failed to disable lazy refcounts: ${strerrorOf(err)}`, { cause: err });
      });
    }
    // The metadata caches are written out now (to the file the node has before the reopen) and replaced by
    // empty ones at commit: a reopen that swaps the file reads L2 tables and refcount blocks from the new one.
    await this.image.writeCaches().catch((err: unknown) => {
      throw new BlockError('IO', `Failed to flush the L2 table cache: ${strerrorOf(err)}`, { cause: err });
    });
    if (state.readOnly) {
      if (!this.readOnly) await this.storeBitmaps();
      for (const b of this.dirtyBitmaps.all()) if (b.persistent) b.readOnly = true;
      await this.flush();
    }
    return {
      commitPost: async () => {
        this.image.lazy.enabled = lazyRefcounts;
        this.image.overlapCheck = overlapCheck;
        await this.image.dropTableCaches();
        if (!state.readOnly) await this.bitmapsWritable();
      },
    };
  }

  /** qcow2_reopen_bitmaps_rw, after a reopen read-write: the image may be written, its bitmaps flagged in use and changed. */
  private async bitmapsWritable(): Promise<void> {
    try {
      await this.image.reopenReadWrite({ persistentBitmaps: true });
      const persistent = this.dirtyBitmaps.all().filter((b) => b.persistent && !b.inconsistent && b.readOnly);
      if (persistent.length > 0) await this.image.bitmaps.markInUse();
      for (const b of persistent) b.readOnly = false;
    } catch (err) {
      process.emitWarning(`${this.nodeName}: Failed to make dirty bitmaps writable: ${err instanceof Error ? err.message : String(err)}`, 'BlockemuWarning');
    }
  }

  /**
   * qcow2_inactivate for a migration: the persistent bitmaps stored (and
   * flagged not in use), the caches written; the image is then kept open
   * read-only, so nothing of this process reaches the file again (not even
   * at close) while another process owns it.
   */
  override async inactivate(): Promise<void> {
    if (!this.readOnly) {
      await this.storeBitmaps().catch((err: unknown) =>
        this.errorReport(`Lost persistent bitmaps during inactivation of node '${this.nodeName}': ${err instanceof Error ? err.message : String(err)}`),
      );
    }
    await this.flush();
    await this.reload(true);
  }

  /**
   * qcow2_co_invalidate_cache: the image is closed (it was only read) and
   * opened again, as the process that wrote it meanwhile left it; its
   * persistent bitmaps are loaded afresh and the node's in-memory ones
   * (a migration's, say) kept.
   */
  override async activate(): Promise<void> {
    const loaded = await this.reload(this.readOnly);
    for (const l of loaded) {
      const same = this.dirtyBitmaps.find(l.name);
      if (same) this.dirtyBitmaps.release(same);
    }
    this.adoptBitmaps(loaded);
  }

  /** The encrypt.* options the node was opened with: an image opened again (activation) is unlocked with them again. */
  private encryption: EncryptionOptions | undefined;

  /** The image opened again on the same file (read-only: as a view only), replacing the one in use; its bitmaps as loaded. */
  private async reload(readOnly: boolean): Promise<LoadedBitmap[]> {
    const fileLink = this.childEdge('file')!;
    const filename = (await fileLink.node.imageInfo()).filename;
    const dataLink = this.childEdge('data-file');
    const data = dataLink && new NodeByteFile(dataLink.node, (await dataLink.node.imageInfo()).filename, readOnly);
    const fresh = await Qcow2Image.openFile(new NodeByteFile(fileLink.node, filename, readOnly), {
      readOnly,
      persistentBitmaps: true,
      givenDataFile: data && (() => Promise.resolve(data)),
      openBacking: false,
      openBackingImage: () => Promise.reject(new BlockError('UNSUPPORTED', 'backing images are nodes of the graph')),
      ...(this.encryption ? { encryption: this.encryption } : {}),
    });
    let loaded: LoadedBitmap[];
    try {
      const backing = this.childEdge('backing');
      if (backing) fresh.attachBacking(await NodeImage.of(backing.node));
      loaded = await fresh.bitmaps.load();
      if (!readOnly && loaded.length > 0) await fresh.bitmaps.markInUse();
    } catch (err) {
      await fresh.close();
      throw err;
    }
    const old = this.image;
    this.image = fresh;
    fresh.corruption.onReport = (r) => this.eventSink?.({ kind: 'image-corrupted', node: this, ...r });
    await old.close().catch(() => undefined);
    return loaded;
  }

  /**
   * qcow2_inactivate: the persistent bitmaps are stored first, then the
   * caches written. A failure is reported in QEMU's words and closing goes
   * on; bitmaps that could not be stored stay flagged in use on disk, so
   * the next open reports them inconsistent rather than stale.
   */
  protected async doClose(): Promise<void> {
    // A retired image writes nothing more: QEMU closes a node without a driver without the driver's close.
    if (!this.readOnly && !this.ejected && !this.inactive) {
      await this.storeBitmaps().catch((err: unknown) =>
        this.errorReport(`Lost persistent bitmaps during inactivation of node '${this.nodeName}': ${err instanceof Error ? err.message : String(err)}`),
      );
    }
    return this.image.close((message) => this.errorReport(message));
  }
}

/** qcow2_update_options_prepare's checks of the options (taken out of `options`, encrypt.* with them), on open and reopen alike. */
export function checkQcow2RuntimeOptions(image: Qcow2Image, options: Options): { lazyRefcounts: boolean; overlapCheck: number } {
  const opts = absorb(options, QCOW2_OPTIONS);
  const encrypt = extractSub(options, 'encrypt.');
  const facts = { clusterSize: image.layout.clusterSize, virtualSize: image.size(), version: image.version, l2EntrySize: image.layout.l2EntryBytes, encrypted: image.header.cryptMethod !== 0 };
  const fs = image.info().formatSpecific;
  return checkQcow2Options(opts, encrypt, facts, fs?.type === 'qcow2' && fs.lazyRefcounts);
}
