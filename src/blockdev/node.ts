import { BlockError } from '../image/errors.js';
import { isZero } from '../image/request.js';
import type { Extent, ImageInfo, WritePiece } from '../image/types.js';
import { NodeBitmaps } from './dirty-bitmap.js';

/** What a node knows about itself for query-named-block-nodes / query-block (turned into QMP shapes in src/qmp). */
export interface NodeImageInfo {
  filename: string;
  /** The format name as `qemu-img info` says it: 'file' for protocol nodes. */
  format: string;
  virtualSize: number;
  actualSize?: number;
  clusterSize?: number;
  dirtyFlag?: boolean;
  backingFilename?: string;
  fullBackingFilename?: string;
  backingFormat?: string;
  formatSpecific?: ImageInfo['formatSpecific'];
  /** The backing image's info, when the node has one (query output nests it). */
  backingImage?: NodeImageInfo;
}

export interface StatusOptions {
  /** Default true: find zeroes even where that costs reads. */
  wantZero?: boolean;
}

export interface WriteFlags {
  /** Force unit access: the write is on stable storage when it completes. */
  fua?: boolean;
}

export interface ZeroFlags {
  /** The node may deallocate instead of writing zeroes (BDRV_REQ_MAY_UNMAP). */
  mayUnmap?: boolean;
  /** Fail with ENOTSUP rather than write zero buffers where the format cannot zero cheaply (BDRV_REQ_NO_FALLBACK: NBD's FAST_ZERO). */
  noFallback?: boolean;
}

/** Kinds of request, as blkdebug's iotype names them. */
export type IoType = 'read' | 'write' | 'write-zeroes' | 'discard' | 'flush' | 'block-status';

/** The generic options every node has (BlockdevOptionsBase), kept for queries and for the behaviour they change. */
export interface NodeSettings {
  detectZeroes: 'off' | 'on' | 'unmap';
  discard: 'ignore' | 'unmap';
  cacheDirect: boolean;
  cacheNoFlush: boolean;
}

export const DEFAULT_SETTINGS: NodeSettings = { detectZeroes: 'off', discard: 'ignore', cacheDirect: false, cacheNoFlush: false };

/**
 * A user of a node from outside the graph (an export's BlockBackend):
 * when a filter or an overlay takes the node's place, its users follow
 * (bdrv_replace_node moves BlockBackends too).
 */
export interface NodeUser {
  nodeReplaced(next: BlockNode): void;
}

/**
 * A writable qcow2 node must be able to grow its file, and a user outside
 * the graph (an export) forbids that: QEMU refuses the pairing, whichever
 * comes second, with this permission conflict.
 */
export function resizeConflict(file: BlockNode, qcow2Name: string): BlockError {
  return new BlockError(
    'INVALID_ARGUMENT',
    `Permission conflict on node '${file.nodeName}': permissions 'resize' are both required by node '${qcow2Name}' (uses node '${file.nodeName}' as 'file' child) and unshared by an unnamed block device (uses node '${file.nodeName}' as 'root' child).`,
  );
}

/** A child link: the role QEMU names it by ('file', 'backing', 'image', …) and the node. */
export interface ChildLink {
  readonly role: string;
  readonly node: BlockNode;
}

/**
 * A node of the block graph (the contract in ARCHITECTURE.md): a driver
 * that turns requests into requests on its children, down to a file.
 * Nodes count their parents so a node in use cannot be deleted; the
 * graph (graph.ts) owns naming and lifetime.
 */
export abstract class BlockNode {
  abstract readonly driver: string;
  settings: NodeSettings = DEFAULT_SETTINGS;
  /**
   * Run before every write, zero write or discard reaches the driver, with
   * the range about to change: copy-before-write hangs here, so every
   * writer of the node is intercepted, whichever parent it came through
   * (QEMU's filter only sees writers above it).
   */
  readonly beforeWrite: Array<(offset: number, length: number) => Promise<void>> = [];
  /** The job using this node, if any (QEMU's op blockers): e.g. "block job: backup". */
  busyWith: string | undefined;
  /** The node's dirty bitmaps, marked by every completed write, zero write and discard. */
  readonly dirtyBitmaps: NodeBitmaps;
  /** Users outside the graph (exports); each also holds a reference. */
  readonly users = new Set<NodeUser>();
  private parentCount = 0;
  private closed: Promise<void> | undefined;

  constructor(
    readonly nodeName: string,
    /** Changes only one way: a node that becomes a snapshot's backing image is made read-only, as QEMU reopens it. */
    public readOnly: boolean,
    private links: readonly ChildLink[] = [],
  ) {
    for (const l of links) l.node.parentCount++;
    this.dirtyBitmaps = new NodeBitmaps(() => this.size());
  }

  abstract size(): number;
  /**
   * The alignment the node's requests need (bs->bl.request_alignment):
   * 1 for byte-granular drivers; blkdebug's `align` sets it.
   */
  get requestAlignment(): number {
    return 1;
  }
  /**
   * What [offset, offset+length) holds, from its start (the extent may be
   * shorter). With `wantZero: false` (QEMU's want_zero) a node may call
   * data what finding zeroes in would cost reads: a copier that looks at
   * the data anyway asks so.
   */
  abstract blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent>;
  /**
   * Block status for all of [offset, offset+length), extent after extent,
   * in order. A copier asks so for a whole task; the default asks
   * blockStatus until the range is covered, and a format that can answer
   * from its tables at once (qcow2) does.
   */
  async blockStatusRuns(offset: number, length: number, opts?: StatusOptions): Promise<Extent[]> {
    const out: Extent[] = [];
    for (let pos = offset, end = offset + length; pos < end; ) {
      const e = await this.blockStatus(pos, end - pos, opts);
      // An empty extent would never end the walk; the caller asks again for what is not covered.
      if (e.length <= 0) break;
      out.push(e);
      pos += e.length;
    }
    return out;
  }
  /** The driver's own request handling; the public methods apply the node's generic options first. */
  protected abstract doRead(offset: number, length: number): Promise<Uint8Array>;
  protected abstract doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void>;
  protected abstract doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void>;
  protected abstract doDiscard(offset: number, length: number): Promise<void>;
  /** The driver's data to stable storage (bdrv_co_flush_to_disk), not its children's: flush() does those. */
  protected abstract doFlush(): Promise<void>;

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.doRead(offset, length);
  }

  /** Reads into the caller's buffer (every byte of it written): copies and block-copy reuse buffers instead of allocating per request. */
  readInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.doReadInto(buf, offset);
  }

  /** Drivers that can fill a given buffer override this; the default reads and copies. */
  protected async doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    buf.set(await this.doRead(offset, buf.length));
  }

  /** Modifying requests completed (QEMU's write_gen), and how many of them the last good flush covered. */
  private writeGen = 0;
  private flushedGen = 0;

  /** A change made outside the request paths (a truncate) counts as a write for the next flush. */
  protected noteModified(): void {
    this.writeGen++;
  }

  /**
   * One modifying request as bdrv_aligned_pwritev frames it: the node's
   * own debug event first (pwritev, pwritev_zero; none for a compressed
   * write), pwritev_done after it whatever the outcome, and the write
   * generation moved, so the next flush has something to push to the disk.
   */
  private async request(event: 'pwritev' | 'pwritev_zero' | undefined, fn: () => Promise<void>): Promise<void> {
    if (event) this.debugEvent(event);
    try {
      await fn();
    } finally {
      this.debugEvent('pwritev_done');
      this.writeGen++;
    }
  }

  /** detect-zeroes turns all-zero writes into zero writes (which may unmap only with discard=unmap). */
  async write(offset: number, data: Uint8Array, flags: WriteFlags = {}): Promise<void> {
    this.checkWritable();
    for (const hook of this.beforeWrite) await hook(offset, data.length);
    if (this.settings.detectZeroes !== 'off' && isZero(data)) {
      const mayUnmap = this.settings.detectZeroes === 'unmap' && this.settings.discard === 'unmap';
      await this.request('pwritev_zero', () => this.doWriteZeroes(offset, data.length, { mayUnmap }));
    } else if (flags.fua && !this.supportsFua) {
      // bdrv_driver_pwritev emulates FUA: the node is flushed after the driver's write, before the request ends.
      await this.request('pwritev', async () => {
        await this.doWrite(offset, data, {});
        await this.flush();
      });
    } else {
      await this.request('pwritev', () => this.doWrite(offset, data, flags));
    }
    this.dirtyBitmaps.mark(offset, data.length);
  }

  /** Whether the driver writes with FUA itself (supported_write_flags); others get a flush after the write. */
  protected get supportsFua(): boolean {
    return false;
  }

  /**
   * A compressed write (BDRV_REQ_WRITE_COMPRESSED) is a write like any
   * other to the generic layer (bdrv_aligned_pwritev): copy-before-write
   * sees it, dirty bitmaps record it, and detect-zeroes comes first, so
   * zeroes become a zero write however they were to be stored (a
   * drive-backup target, opened with detect-zeroes=unmap, keeps them
   * unallocated instead of holding compressed zero clusters).
   */
  async writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    for (const hook of this.beforeWrite) await hook(offset, data.length);
    if (this.settings.detectZeroes !== 'off' && isZero(data)) {
      const mayUnmap = this.settings.detectZeroes === 'unmap' && this.settings.discard === 'unmap';
      await this.request('pwritev_zero', () => this.doWriteZeroes(offset, data.length, { mayUnmap }));
    } else {
      await this.request(undefined, () => this.doWriteCompressed(offset, data));
    }
    this.dirtyBitmaps.mark(offset, data.length);
  }

  /** Whether the driver itself stores compressed data (bdrv_supports_compressed_writes: filters do not pass it on). */
  get supportsCompressedWrites(): boolean {
    return false;
  }

  /** The driver's compressed write of one cluster; drivers without compression answer ENOTSUP, as bdrv_driver_pwritev_compressed does. */
  protected doWriteCompressed(_offset: number, _data: Uint8Array): Promise<void> {
    return Promise.reject(new BlockError('UNSUPPORTED', `Node '${this.nodeName}' cannot write compressed data`, { errno: 'ENOTSUP' }));
  }

  /** Without discard=unmap a zero write may not deallocate (bdrv_co_pwrite_zeroes drops MAY_UNMAP). */
  async writeZeroes(offset: number, length: number, flags: ZeroFlags = {}): Promise<void> {
    this.checkWritable();
    for (const hook of this.beforeWrite) await hook(offset, length);
    const zeroFlags = { mayUnmap: (flags.mayUnmap ?? false) && this.settings.discard === 'unmap', noFallback: flags.noFallback ?? false };
    await this.request('pwritev_zero', () => this.doWriteZeroes(offset, length, zeroFlags));
    this.dirtyBitmaps.mark(offset, length);
  }

  /**
   * Adjacent pieces in offset order, each data (as write) or zeroes (as
   * writeZeroes, mayUnmap as given), as one request: a block-copy task's
   * extents. The outcome is the pieces', but a format that can take them
   * together (qcow2: one allocation pass, one table update) does, which
   * saves most of what a small request costs here. The whole range is
   * marked dirty even when a piece fails (some may have landed; a bitmap
   * must never miss a change).
   */
  async writePieces(pieces: readonly WritePiece[]): Promise<void> {
    this.checkWritable();
    if (pieces.length === 0) return;
    const start = pieces[0]!.offset;
    const last = pieces[pieces.length - 1]!;
    const length = last.offset + last.length - start;
    for (const hook of this.beforeWrite) await hook(start, length);
    const { detectZeroes, discard } = this.settings;
    const unmap = discard === 'unmap';
    const norm = pieces.map((p): WritePiece => {
      if (p.data) return detectZeroes !== 'off' && isZero(p.data) ? { offset: p.offset, length: p.length, mayUnmap: detectZeroes === 'unmap' && unmap } : p;
      return { offset: p.offset, length: p.length, mayUnmap: (p.mayUnmap ?? false) && unmap };
    });
    // Each piece is a request of its own to QEMU (block-copy writes extent by extent): its events, its generation.
    for (const p of norm) this.debugEvent(p.data ? 'pwritev' : 'pwritev_zero');
    try {
      await this.doWritePieces(norm);
    } finally {
      for (let i = 0; i < norm.length; i++) this.debugEvent('pwritev_done');
      this.writeGen += norm.length;
      this.dirtyBitmaps.mark(start, length);
    }
  }

  /** Drivers that can take pieces together override this; the default sends each on its own, all at once. */
  protected async doWritePieces(pieces: readonly WritePiece[]): Promise<void> {
    const results = await Promise.allSettled(pieces.map((p) => (p.data ? this.doWrite(p.offset, p.data, {}) : this.doWriteZeroes(p.offset, p.length, { mayUnmap: p.mayUnmap ?? false }))));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  /** With discard=ignore (the default) a discard succeeds and does nothing, as in QEMU. */
  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    if (this.settings.discard === 'ignore') return;
    for (const hook of this.beforeWrite) await hook(offset, length);
    try {
      await this.doDiscard(offset, length);
    } finally {
      this.writeGen++;
    }
    this.dirtyBitmaps.mark(offset, length);
  }

  /**
   * Copy-on-read prefetch (NBD's CACHE: BDRV_REQ_COPY_ON_READ |
   * BDRV_REQ_PREFETCH): what the node would read from below it is stored
   * in the node itself. Only formats with a backing chain have anything to
   * do; the default passes the request to the children of filters.
   */
  async prefetch(offset: number, length: number): Promise<void> {
    const below = this.child('file');
    if (below && below.size() === this.size()) await below.prefetch(offset, length);
  }

  /** The node becomes read-only for good (a snapshot's old top, reopened read-only below its overlay). */
  async reopenReadOnly(): Promise<void> {
    this.readOnly = true;
  }

  /**
   * bdrv_co_flush: nothing on a read-only node; flush_to_os is announced
   * to the primary child and the driver writes its caches out
   * (doFlushToOs); unless cache.no-flush is set or nothing was written
   * since the last good flush, flush_to_disk is announced and the driver
   * makes its data stable (doFlush); then every writable child is flushed
   * the same way. So a blkdebug rule armed by flush_to_disk needs writes
   * before the flush, and a blkdebug node sees a flush request only then.
   */
  async flush(): Promise<void> {
    if (this.readOnly) return;
    const gen = this.writeGen;
    const primary = this.child('file') ?? this.child('image');
    primary?.debugEvent('flush_to_os');
    await this.doFlushToOs();
    if (!this.settings.cacheNoFlush && this.flushedGen !== gen) {
      primary?.debugEvent('flush_to_disk');
      await this.doFlush();
    }
    let failure: { err: unknown } | undefined;
    for (const c of this.children()) {
      if (c.readOnly) continue;
      await c.flush().catch((err: unknown) => (failure ??= { err }));
    }
    if (failure) throw failure.err;
    this.flushedGen = gen;
  }

  /** The driver's caches out to the layer below (bdrv_co_flush_to_os); most drivers keep none. */
  protected async doFlushToOs(): Promise<void> {}

  /**
   * Starts pushing the data written so far to stable storage, with none of
   * a flush's ordering (no metadata is written, nothing waits for it): a
   * hint that makes a later flush cheap. A long copy gives it now and then
   * so the disk writes while the copy goes on, instead of all at the end
   * (QEMU's qcow2 flushes now and then during a copy for its own reasons,
   * with the same effect). Syncing more than asked is always safe; failures
   * are left for the real flush to meet.
   */
  async startWriteback(): Promise<void> {
    if (this.settings.cacheNoFlush) return;
    await Promise.all(this.children().map((c) => c.startWriteback()));
  }
  abstract imageInfo(): Promise<NodeImageInfo>;
  /** Releases what this node holds (not its children: the graph closes those it owns). */
  protected abstract doClose(): Promise<void>;

  /** Adds, or with `node` undefined removes, the child of a role after opening (a snapshot's backing link). */
  protected setChild(role: string, node: BlockNode | undefined): void {
    for (const l of this.links) if (l.role === role) l.node.parentCount--;
    this.links = [...this.links.filter((l) => l.role !== role), ...(node ? [{ role, node }] : [])];
    if (node) node.parentCount++;
  }

  /**
   * Points this node's links to `old` at `next` instead (one parent's part
   * of bdrv_replace_node): its requests go to `next` from now on. Drivers
   * that keep a child at hand update it in childReplaced.
   */
  async replaceChild(old: BlockNode, next: BlockNode): Promise<void> {
    for (const l of this.links.filter((x) => x.node === old)) await this.childReplaced(l.role, next);
    this.links = this.links.map((l) => {
      if (l.node !== old) return l;
      old.parentCount--;
      next.parentCount++;
      return { role: l.role, node: next };
    });
  }

  /** The child of `role` is `node` now; drivers holding children outside `links` follow. */
  protected async childReplaced(_role: string, _node: BlockNode): Promise<void> {}

  childLinks(): readonly ChildLink[] {
    return this.links;
  }
  children(): readonly BlockNode[] {
    return this.links.map((l) => l.node);
  }
  child(role: string): BlockNode | undefined {
    return this.links.find((l) => l.role === role)?.node;
  }

  /** Parents using this node (other nodes, jobs, exports). */
  get inUse(): boolean {
    return this.parentCount > 0;
  }
  /** A job or export holding the node, like QEMU's BlockBackend references. */
  ref(): void {
    this.parentCount++;
  }
  unref(): void {
    this.parentCount--;
  }
  attachUser(u: NodeUser): void {
    this.users.add(u);
    this.ref();
  }
  detachUser(u: NodeUser): void {
    if (this.users.delete(u)) this.unref();
  }

  /**
   * A blkdebug event announced on this node (QEMU's BLKDBG_EVENT on a
   * child, bdrv_debug_event on the node itself). Only a blkdebug node acts
   * on it; it goes no further, through filters neither (bdrv_debug_event
   * calls the node's own driver only).
   */
  debugEvent(_event: string): void {}

  /** Closes this node; detaches it from its children. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.doClose();
      for (const l of this.links) l.node.parentCount--;
    })();
    return this.closed;
  }

  protected checkWritable(): void {
    if (this.readOnly) throw new BlockError('READ_ONLY', `Node '${this.nodeName}' is read-only`, { errno: 'EPERM' });
  }
}
