import { BlockError } from '../../image/errors.js';
import { isZero } from '../../image/request.js';
import { openImage } from '../../image/open.js';
import type { LoadedBitmap } from '../../image/qcow2/bitmaps.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import type { Extent, WritePiece } from '../../image/types.js';
import { BlockNode, type ChildLink, type NodeImageInfo, resizeConflict, type WriteFlags, type ZeroFlags } from '../node.js';
import { NodeByteFile } from '../node-file.js';
import { NodeImage } from '../node-image.js';
import { ChunkBitmap } from '../bitmap.js';
import { RequestFence } from '../request-fence.js';

/** A prefetch copies at most this much at a time (QEMU's bounce buffer is bounded too). */
const PREFETCH_CHUNK = 1 << 20;

/**
 * The `qcow2` format driver: a Qcow2Image whose bytes come from the `file`
 * child node. The backing chain named in the header is opened by the image
 * layer (read-only, not as graph nodes) unless `backing` says otherwise:
 * null for none.
 */
export class Qcow2Node extends BlockNode {
  readonly driver = 'qcow2';

  private constructor(
    name: string,
    readonly image: Qcow2Image,
    private file: BlockNode,
    readOnly: boolean,
    links: ChildLink[],
  ) {
    super(name, readOnly, links);
  }

  /**
   * `backing`: undefined opens the chain the header names (in the image
   * layer), null none, a node makes that node the backing image (a
   * snapshot overlay on an existing node).
   */
  static async open(name: string, file: BlockNode, readOnly: boolean, backing: BlockNode | null | undefined): Promise<Qcow2Node> {
    const filename = (await file.imageInfo()).filename;
    if (!readOnly && file.readOnly) throw new BlockError('READ_ONLY', `Block node is read-only`, { errno: 'EPERM' });
    if (!readOnly && file.users.size > 0) throw resizeConflict(file, name);
    // The image layer speaks like qemu-img ("Could not open 'f': …"); a node's open error is just the reason, as QEMU's.
    const reason = (err: unknown) =>
      err instanceof BlockError && err.message.startsWith(`Could not open '${filename}': `)
        ? new BlockError(err.code, err.message.slice(`Could not open '${filename}': `.length), { errno: err.errno, cause: err })
        : err;
    let image: Qcow2Image;
    try {
      image = await Qcow2Image.openFile(new NodeByteFile(file, filename), {
        readOnly,
        persistentBitmaps: true,
        openBacking: backing === undefined,
        ...(backing ? { backingImage: await NodeImage.of(backing) } : {}),
        openBackingImage: (p, fmt, depth) => openImage(p, { format: fmt, readOnly: true, depth }),
      });
    } catch (err) {
      throw reason(err);
    }
    // qcow2_load_dirty_bitmaps, before the node exists: a bad directory fails the open and leaves nothing behind.
    let loaded: LoadedBitmap[];
    try {
      loaded = await image.bitmaps.load();
      if (!readOnly && loaded.length > 0) await image.bitmaps.markInUse();
    } catch (err) {
      await image.close();
      throw reason(err);
    }
    const links: ChildLink[] = [{ role: 'file', node: file }];
    if (backing) links.push({ role: 'backing', node: backing });
    const node = new Qcow2Node(name, image, file, readOnly, links);
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

  size(): number {
    return this.image.size();
  }
  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.image.read(offset, length);
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.image.readInto(buf, offset);
  }
  protected doWrite(offset: number, data: Uint8Array, _flags: WriteFlags): Promise<void> {
    return this.changing(offset, data.length, () => this.image.write(offset, data));
  }
  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    if (flags.noFallback) await this.checkFastZero(offset, length);
    return this.changing(offset, length, () => this.image.writeZeroes(offset, length, { mayUnmap: flags.mayUnmap ?? false }));
  }
  protected doDiscard(offset: number, length: number): Promise<void> {
    return this.changing(offset, length, () => this.image.discard(offset, length));
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
      const st = await this.image.blockStatus(c, len);
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
        const st = await this.image.blockStatus(at, Math.min(end - at, PREFETCH_CHUNK));
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
  /** qcow2_co_flush_to_os: the tables out to the file (with the image's own barriers); flush() then flushes the file child. */
  protected override doFlushToOs(): Promise<void> {
    return this.image.flush();
  }
  protected async doFlush(): Promise<void> {}
  blockStatus(offset: number, length: number): Promise<Extent> {
    return this.image.blockStatus(offset, length);
  }
  override blockStatusRuns(offset: number, length: number): Promise<Extent[]> {
    return this.image.blockStatusRuns(offset, length);
  }
  /** The image's bytes and backing image follow the graph: its file is read through the new node, its backing image is the new node. */
  protected override async childReplaced(role: string, node: BlockNode): Promise<void> {
    if (role === 'file') {
      this.file = node;
      (this.image.file as NodeByteFile).retarget(node);
    } else if (role === 'backing') {
      this.image.attachBacking(await NodeImage.of(node));
    }
  }

  /** blockdev-snapshot: this overlay (opened without a backing image) reads through to `node` from now on; undefined undoes it. */
  async setBackingNode(node: BlockNode | undefined): Promise<void> {
    this.image.attachBacking(node ? await NodeImage.of(node) : undefined);
    this.setChild('backing', node);
  }

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
    const bitmaps = await this.image.bitmaps.describe();
    if (bitmaps.length > 0 && out.formatSpecific) out.formatSpecific = { ...out.formatSpecific, bitmaps };
    const backingNode = this.child('backing');
    if (backingNode) {
      out.backingImage = await backingNode.imageInfo();
      // An overlay given its backing node at run time (blockdev-snapshot) names it as QEMU then does.
      if (out.backingFilename === undefined) {
        out.backingFilename = out.fullBackingFilename = out.backingImage.filename;
        out.backingFormat = backingNode.driver === 'qcow2' ? 'qcow2' : 'raw';
      }
      return out;
    }
    let below = this.image.backing();
    let level: NodeImageInfo = out;
    while (below) {
      const bi = below.info();
      const next: NodeImageInfo = { ...bi, actualSize: await below.actualSize() };
      level.backingImage = next;
      level = next;
      below = below.backing();
    }
    return out;
  }

  /** Writes the persistent bitmaps that may change into the image (qcow2_store_persistent_dirty_bitmaps). */
  private async storeBitmaps(): Promise<void> {
    const keep = this.dirtyBitmaps.all().filter((b) => b.persistent && !b.inconsistent && !b.readOnly && b.name !== undefined);
    await this.image.bitmaps.store(keep.map((b) => ({ name: b.name!, granularity: b.granularity, enabled: !b.disabled, data: b.bits.serialize() })));
  }

  /**
   * qcow2_reopen_bitmaps_ro: the bitmaps are stored now (the image will
   * not be written again) and become read-only. The node stays read-only
   * even if storing fails; the bitmaps then stay flagged in use.
   */
  override async reopenReadOnly(): Promise<void> {
    if (this.readOnly) return;
    try {
      await this.storeBitmaps();
    } finally {
      for (const b of this.dirtyBitmaps.all()) if (b.persistent) b.readOnly = true;
      await super.reopenReadOnly();
    }
  }

  /**
   * Closing stores the persistent bitmaps first (qcow2_inactivate). If that
   * fails they stay flagged in use on disk, so the next open reports them
   * inconsistent rather than stale — QEMU warns and goes on closing too.
   */
  protected async doClose(): Promise<void> {
    if (!this.readOnly) await this.storeBitmaps().catch(() => undefined);
    return this.image.close();
  }
}
