import { BlockError } from '../image/errors.js';
import { isZero } from '../image/request.js';
import type { Extent, ImageInfo, StatusOptions, WritePiece } from '../image/types.js';
import type { HostRun } from '../image/byte-file.js';
import { PERM_ALL } from '../image/perm.js';
import { checkResizeRequest } from '../image/resize.js';
import type { Preallocation } from '../image/types.js';
import { type ChildOwner, defaultChildPerms, type NodeChild, type PermPair } from './child.js';
import { NodeBitmaps } from './dirty-bitmap.js';
import type { NamePolicy } from './filename.js';
import { OpBlockers } from './op-blockers.js';
import { joinOptions, type Options } from './options.js';
import { type ReopenPlan, writableAfter } from './permissions.js';
import type { ReopenState, StagedReopen } from './reopen-driver.js';
import { NodeWriteStats } from './write-stats.js';
import type { BlockNodeEventSink } from './node-events.js';
import type { HeldWait } from './faults/held.js';
import type { NodeFaults } from './faults/node-faults.js';

/** Kept here too: block status options are the image layer's, and nodes are asked with them. */
export type { StatusOptions } from '../image/types.js';

/** What a node knows about itself for query-named-block-nodes / query-block (turned into QMP shapes in src/qmp). */
export interface NodeImageInfo {
  filename: string;
  /** The format name as `qemu-img info` says it: 'file' for protocol nodes. */
  format: string;
  virtualSize: number;
  actualSize?: number;
  clusterSize?: number;
  /** null: the driver has no image info to tell it from (no dirty-flag in queries). */
  dirtyFlag?: boolean | null;
  backingFilename?: string;
  fullBackingFilename?: string;
  backingFormat?: string;
  /** The image's data is encrypted. */
  encrypted?: boolean;
  formatSpecific?: ImageInfo['formatSpecific'];
  /** Its internal snapshots (bdrv_query_snapshot_info_list), when it has any. */
  snapshots?: readonly NodeSnapshotInfo[];
  /** The next layer's info (its filtered or backing child), nested by the query layer. */
  backingImage?: NodeImageInfo;
}

/** One internal snapshot as queries describe it (SnapshotInfo). */
export interface NodeSnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  /** Undefined where the snapshot recorded none. */
  icount?: bigint;
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
  /** Force unit access, as for writes. */
  fua?: boolean;
}

/** A driver's own I/O counters (BlockStatsSpecific): file-posix counts its discards. */
export interface DriverStats {
  driver: 'file';
  discardNbOk: number;
  discardNbFailed: number;
  discardBytesOk: number;
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

const FORMAT_NAMING: NamePolicy = { protocol: false, strong: [] };

/**
 * A node of the block graph (the contract in ARCHITECTURE.md): a driver
 * that turns requests into requests on its children, down to a file.
 * Its links to its children and from its parents carry QEMU's
 * permissions (child.ts, permissions.ts); the graph (graph.ts) owns
 * naming and lifetime and changes links only through transactions that
 * check them.
 */
export abstract class BlockNode implements ChildOwner {
  abstract readonly driver: string;
  settings: NodeSettings = DEFAULT_SETTINGS;
  /**
   * Run before every write, zero write or discard reaches the driver, with
   * the range about to change: copy-before-write hangs here, so every
   * writer of the node is intercepted, whichever parent it came through
   * (QEMU's filter only sees writers above it).
   */
  readonly beforeWrite: Array<(offset: number, length: number) => Promise<void>> = [];
  /** Why operations on the node are refused just now: a job using it, an overlay above it (QEMU's op blockers). */
  readonly blockers = new OpBlockers();
  /** The node's dirty bitmaps, marked by every completed write, zero write and discard. */
  readonly dirtyBitmaps: NodeBitmaps;
  /** The highest offset written and the write threshold, kept by the generic write path. */
  readonly writeStats = new NodeWriteStats();
  /**
   * Faults armed on the node (blockemu's fault-add), consulted where the
   * driver is called, so they fail a request as blkdebug would at that
   * point without a node in the graph; undefined when there are none.
   */
  faults: NodeFaults | undefined;
  /** Resolves once a request is held here by injection (a stall; blkdebug adds its breakpoints); undefined when none can be. */
  whenRequestHeld(): HeldWait | undefined {
    return this.faults?.held.when();
  }
  /** Whether requests here may fail, stall or be held by injection: armed faults, or a blkdebug node (which says so itself). */
  get injectsFaults(): boolean {
    return this.faults !== undefined;
  }
  /** Where the node's own events go (the graph's, once the node is in one). */
  eventSink: BlockNodeEventSink | undefined;
  /** Links from the node's users — other nodes, BlockBackends, jobs — newest first (bs->parents). */
  readonly parents: NodeChild[] = [];
  /** force-share: every parent of this node shares everything (QEMU's bs->force_share, read-only nodes only). */
  forceShare = false;
  /**
   * BDRV_O_INACTIVE: another process owns the image just now (an incoming
   * migration's destination before it completes, its source after). The
   * node writes nothing, needs no write permission of its children and
   * lets others write and resize them, so its file takes no write lock.
   */
  inactive = false;
  /** This node's links to its children, newest first (bs->children). */
  private edges: NodeChild[] = [];
  /**
   * The node's options, flat, as QEMU keeps them (bs->options): what it was
   * opened or last reopened with, children's options left out. Its name is
   * made from them, and a reopen compares new options with them.
   */
  options: Options = {};
  /** The options given for this node itself, before any were inherited (bs->explicit_options). */
  explicitOptions: Options = {};
  /** The file name the node was opened with (a protocol node's own name before any refresh). */
  openFilename: string | undefined;
  /** The backing file the image names, as opened when it was (bs->auto_backing_file): '' for none. */
  autoBackingFile = '';
  /**
   * The node opened from the header's name, if it was (bdrv_open_backing_file's implicit backing): QEMU then
   * makes auto_backing_file that node's own refreshed name, so while it is the backing child the node's
   * backing counts as the header's even where the header's text (a json: name) reads otherwise.
   */
  autoBackingNode: BlockNode | undefined;
  /** The parent this node was opened inline for (bs->inherits_from): a reopen of the parent takes it along. */
  inheritsFrom: BlockNode | undefined;
  /** Inserted by a job without a name of the user's (bs->implicit): a reopen looks through it, and it is named after its one child. */
  implicit = false;
  /** No frozen chain may pass through it (bs->never_freeze: commit_top, which must always be droppable). */
  neverFreeze = false;
  /** References that are not links (the monitor's, a transaction's): bdrv_ref. */
  private extraRefs = 0;
  private closed: Promise<void> | undefined;
  /**
   * Write requests finished (bs->write_gen) and the count the last
   * successful flush saw (bs->flushed_gen): a flush with nothing written
   * since the last one skips its flush to disk, as bdrv_co_flush does.
   */
  private writeGen = 0;
  private flushedGen = 0;

  constructor(
    readonly nodeName: string,
    /** Changed only by a reopen (a snapshot's old top becomes read-only; blockdev-reopen). */
    public readOnly: boolean,
    /** Links attached while the node was being opened, oldest first: they become this node's. */
    children: readonly NodeChild[] = [],
  ) {
    for (const c of children) this.adoptChild(c);
    this.dirtyBitmaps = new NodeBitmaps(() => this.size());
  }

  /** How QEMU names a node as a parent in permission conflicts. */
  describe(): string {
    return `node '${this.nodeName}'`;
  }

  /** A link already in the child's parents becomes this node's (the graph attached it for us), newest or (undoing a removal) back at `at`. */
  adoptChild(c: NodeChild, at = 0): void {
    c.owner = this;
    if (!this.edges.includes(c)) this.edges.splice(at, 0, c);
  }

  /** Forgets a link the graph has detached from its child. */
  dropChild(c: NodeChild): void {
    this.edges = this.edges.filter((e) => e !== c);
  }

  /**
   * What this node needs of a child and shares with its other parents,
   * given what its own parents take and share (the driver's
   * bdrv_child_perm); `plan` tells the read-only state after a reopen.
   */
  childPerm(c: NodeChild, perm: number, shared: number, plan?: ReopenPlan): PermPair {
    return defaultChildPerms(c.role, writableAfter(this, plan), perm, shared);
  }

  /**
   * The driver's part of a permission change (bdrv_check_perm): may refuse
   * the new cumulative permissions. A file node takes its lock bytes here;
   * exactly one of commitPerm and abortPerm follows.
   */
  checkPerm(_perm: number, _shared: number): Promise<void> {
    return Promise.resolve();
  }
  /** The permissions now in force (bdrv_set_perm): a file node drops the lock bytes no longer needed. */
  commitPerm(_perm: number, _shared: number): Promise<void> {
    return Promise.resolve();
  }
  /** Undoes checkPerm (bdrv_abort_perm_update). */
  abortPerm(): Promise<void> {
    return Promise.resolve();
  }

  /** The smallest request the node serves without read-modify-write (bl.request_alignment). */
  requestAlignment(): number {
    return 1;
  }

  abstract size(): number;
  /**
   * What [offset, offset+length) holds, from its start (the extent may be
   * shorter). With `wantZero: false` (QEMU's want_zero) a node may call
   * data what finding zeroes in would cost reads: a copier that looks at
   * the data anyway asks so.
   */
  abstract blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent>;
  /** The host's holes and data from `offset` (SEEK_DATA/SEEK_HOLE): a host file's node has them, others do not. */
  hostAllocation?(offset: number, length: number): Promise<HostRun>;
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
  /** Flushes to disk, children included; `written`: anything was written to this node since its last flush. */
  protected abstract doFlush(written: boolean): Promise<void>;

  read(offset: number, length: number): Promise<Uint8Array> {
    if (this.faults) return this.faults.run('read', offset, length, () => this.doRead(offset, length));
    return this.doRead(offset, length);
  }

  /** Reads into the caller's buffer (every byte of it written): copies and block-copy reuse buffers instead of allocating per request. */
  readInto(buf: Uint8Array, offset: number): Promise<void> {
    if (this.faults) return this.faults.run('read', offset, buf.length, () => this.doReadInto(buf, offset));
    return this.doReadInto(buf, offset);
  }

  /** Drivers that can fill a given buffer override this; the default reads and copies. */
  protected async doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    buf.set(await this.doRead(offset, buf.length));
  }

  /** detect-zeroes turns all-zero writes into zero writes (which may unmap only with discard=unmap). */
  async write(offset: number, data: Uint8Array, flags: WriteFlags = {}): Promise<void> {
    this.checkWritable();
    for (const hook of this.beforeWrite) await hook(offset, data.length);
    const fua = flags.fua ?? false;
    const emulateFua = fua && !this.supportsFua;
    const align = this.requestAlignment();
    this.writeStats.check(this, offset, data.length, align);
    try {
      const zero = this.settings.detectZeroes !== 'off' && isZero(data);
      const op = async () => {
        if (zero) {
          await this.doWriteZeroes(offset, data.length, { mayUnmap: this.settings.detectZeroes === 'unmap' && this.settings.discard === 'unmap', fua: fua && !emulateFua });
        } else {
          await this.doWrite(offset, data, emulateFua ? { ...flags, fua: false } : flags);
        }
        if (emulateFua) await this.flush();
      };
      if (this.faults) await this.faults.run(zero ? 'write-zeroes' : 'write', offset, data.length, op, (n) => this.doWrite(offset, data.subarray(0, n), {}));
      else await op();
    } finally {
      // After the driver, failed or not, as bdrv_co_write_req_finish: a FUA write's own flush sees the count before it.
      this.writeGen++;
      this.writeStats.finish(offset, data.length, align);
    }
    this.dirtyBitmaps.mark(offset, data.length);
  }

  /**
   * Whether the driver makes a write stable itself when asked (FUA in its
   * supported_write_flags). None of QEMU's file-posix, raw, qcow2, blkdebug
   * and filters over them does, so the node that gets a FUA request
   * emulates it as bdrv_driver_pwritev does: the request goes down without
   * FUA, then the node is flushed, children included, inside the request
   * (before it counts as written). A blkdebug node below sees that flush.
   */
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
    this.writeStats.check(this, offset, data.length);
    try {
      const zero = this.settings.detectZeroes !== 'off' && isZero(data);
      const op = () =>
        zero ? this.doWriteZeroes(offset, data.length, { mayUnmap: this.settings.detectZeroes === 'unmap' && this.settings.discard === 'unmap' }) : this.doWriteCompressed(offset, data);
      // A torn compressed write keeps nothing: a compressed cluster is stored whole or not at all.
      if (this.faults) await this.faults.run(zero ? 'write-zeroes' : 'write', offset, data.length, op);
      else await op();
    } finally {
      this.writeGen++;
      this.writeStats.finish(offset, data.length);
    }
    this.dirtyBitmaps.mark(offset, data.length);
  }

  /**
   * bdrv_make_empty: every cluster of the image unallocated, so its
   * backing file shows through (the monitor's `commit` does it after
   * copying the data down). Only formats that can answer; the rest
   * refuse with ENOTSUP, which that caller ignores.
   */
  makeEmpty(): Promise<void> {
    return Promise.reject(new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' }));
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
    const emulateFua = (flags.fua ?? false) && !this.supportsFua;
    const align = this.requestAlignment();
    this.writeStats.check(this, offset, length, align);
    try {
      const op = async () => {
        await this.doWriteZeroes(offset, length, {
          mayUnmap: (flags.mayUnmap ?? false) && this.settings.discard === 'unmap',
          noFallback: flags.noFallback ?? false,
          fua: (flags.fua ?? false) && !emulateFua,
        });
        if (emulateFua) await this.flush();
      };
      if (this.faults) await this.faults.run('write-zeroes', offset, length, op);
      else await op();
    } finally {
      this.writeGen++;
      this.writeStats.finish(offset, length, align);
    }
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
    // Each piece is a request of its own to QEMU (block-copy writes extent by extent).
    for (let i = 0; i < pieces.length; i++) this.writeStats.check(this, pieces[i]!.offset, pieces[i]!.length);
    try {
      // With faults armed each piece is a request of its own, as blkdebug (a filter without doWritePieces) sees them.
      if (this.faults) await this.faultedPieces(this.faults, norm);
      else await this.doWritePieces(norm);
    } finally {
      this.writeGen++;
      this.writeStats.finish(start, length);
      this.dirtyBitmaps.mark(start, length);
    }
  }

  private async faultedPieces(faults: NodeFaults, pieces: readonly WritePiece[]): Promise<void> {
    const results = await Promise.allSettled(
      pieces.map((p) =>
        faults.run(p.data ? 'write' : 'write-zeroes', p.offset, p.length, () => this.doWritePieces([p]), p.data ? (n) => this.doWrite(p.offset, p.data!.subarray(0, n), {}) : undefined),
      ),
    );
    for (const r of results) if (r.status === 'rejected') throw r.reason;
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
    // Checked against the threshold, but not counted in the highest offset written (QEMU's tracked discard is no write).
    this.writeStats.check(this, offset, length);
    try {
      if (this.faults) await this.faults.run('discard', offset, length, () => this.doDiscard(offset, length));
      else await this.doDiscard(offset, length);
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
    const below = this.child('file') ?? this.child('image');
    if (below && below.size() === this.size()) await below.prefetch(offset, length);
  }

  /**
   * bdrv_co_truncate: the node becomes `newSize` bytes long (refused as
   * QEMU refuses: negative, read-only), through its driver or, for a
   * filter, its filtered child; its dirty bitmaps follow. The caller holds
   * resize permission through a BlockBackend and has drained the node.
   */
  async resize(newSize: number, prealloc: Preallocation = 'off'): Promise<void> {
    checkResizeRequest(newSize, this.readOnly);
    try {
      await this.doResize(newSize, prealloc);
    } finally {
      // A truncate is a write to the next flush (bdrv_co_write_req_finish), failed or not.
      this.writeGen++;
    }
    this.dirtyBitmaps.truncate(this.size());
  }

  /** The driver's resize; a filter passes it to the node it filters. */
  protected doResize(newSize: number, prealloc: Preallocation): Promise<void> {
    const filtered = this.isFilter ? (this.child('file') ?? this.child('image')) : undefined;
    if (filtered) return filtered.resize(newSize, prealloc);
    return Promise.reject(new BlockError('UNSUPPORTED', 'Image format driver does not support resize', { errno: 'ENOTSUP' }));
  }

  /** Whether the driver can be reopened at all (it has a bdrv_reopen_prepare). */
  get supportsReopen(): boolean {
    return true;
  }
  /** Driver options a reopen may leave out, resetting them to their defaults (drv->mutable_opts). */
  get mutableOptions(): readonly string[] {
    return [];
  }
  /** bdrv_join_options: a reopen's `options` take the node's old explicit ones (a copy) they do not name. */
  joinReopenOptions(options: Options, old: Options): void {
    joinOptions(options, old);
  }
  /**
   * drv->bdrv_reopen_prepare: checks and stages the driver's options. The
   * default takes none (null, blkdebug: the generic comparison then refuses
   * any change of theirs).
   */
  prepareReopen(_state: ReopenState): Promise<StagedReopen> {
    return Promise.resolve({});
  }

  /**
   * bdrv_co_flush: flush_to_os is announced on the primary child, the
   * driver writes what it holds in memory (doFlushToOs), then, if anything
   * was written since the last flush, flush_to_disk is announced and the
   * driver flushes (doFlush, told whether anything was written: blkdebug
   * checks its rules only then, as QEMU skips the driver's flush to disk).
   * cache.no-flush makes flushes no-ops.
   */
  async flush(): Promise<void> {
    if (this.settings.cacheNoFlush) return;
    const gen = this.writeGen;
    const primary = this.debugPrimary();
    primary?.debugEvent('flush_to_os');
    await this.doFlushToOs();
    const written = gen !== this.flushedGen;
    if (written) primary?.debugEvent('flush_to_disk');
    if (this.faults) await this.faults.run('flush', 0, 0, () => this.doFlush(written));
    else await this.doFlush(written);
    if (gen > this.flushedGen) this.flushedGen = gen;
  }

  /** A format's flush to the OS: writes the metadata it holds in memory (qcow2); the default holds none. */
  protected async doFlushToOs(): Promise<void> {}

  /**
   * The child a flush announces its blkdebug events on (bdrv_primary_child):
   * a format's file, a filter's image. A driver whose flush bypasses the
   * generic path in QEMU (copy-before-write) announces nothing.
   */
  protected debugPrimary(): BlockNode | undefined {
    return this.child('file') ?? this.child('image');
  }

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
  /** The driver's own counters for query-blockstats (bdrv_get_specific_stats); most drivers keep none. */
  specificStats(): DriverStats | undefined {
    return undefined;
  }
  /** Releases what this node holds (not its children: the graph closes those it owns). */
  protected abstract doClose(): Promise<void>;

  /** How the driver names its node (filename.ts): a format node by default. */
  get namePolicy(): NamePolicy {
    return FORMAT_NAMING;
  }

  /** The driver has given up the node (a qcow2 image found corrupt): QEMU's node without a driver, which queries call ejected. */
  get ejected(): boolean {
    return false;
  }

  /** Whether the driver is a filter (drv->is_filter): it passes requests to one child. */
  get isFilter(): boolean {
    return false;
  }
  /** Whether the driver can have a backing child (drv->supports_backing). */
  get supportsBacking(): boolean {
    return false;
  }
  /** Writes another backing file name (or none) into the image (drv->bdrv_change_backing_file); ENOTSUP where the format has none. */
  changeBackingFile(_name: string | undefined, _format: string | undefined): Promise<void> {
    return Promise.reject(new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' }));
  }

  /** The backing child came or went (bdrv_set_backing_hd); drivers reading through it follow. */
  backingChanged(_node: BlockNode | undefined): Promise<void> {
    return Promise.resolve();
  }

  /** The child of `c` is `node` now (the graph replaced it); drivers holding children outside the links follow. */
  childReplaced(_c: NodeChild, _node: BlockNode): Promise<void> {
    return Promise.resolve();
  }

  /** Links to children, newest first, as QEMU walks them. */
  childList(): readonly NodeChild[] {
    return this.edges;
  }
  /** The children, oldest link first. */
  children(): BlockNode[] {
    const out: BlockNode[] = [];
    for (let i = this.edges.length - 1; i >= 0; i--) out.push(this.edges[i]!.node);
    return out;
  }
  child(name: string): BlockNode | undefined {
    return this.childEdge(name)?.node;
  }
  childEdge(name: string): NodeChild | undefined {
    return this.edges.find((c) => c.name === name);
  }

  /** Parents and other references: a node in use cannot be deleted. */
  get inUse(): boolean {
    return this.refcount > 0;
  }
  /** bs->refcnt, less the monitor's own reference. */
  get refcount(): number {
    return this.parents.length + this.extraRefs;
  }
  /** A reference that is not a link (bdrv_ref). */
  ref(): void {
    this.extraRefs++;
  }
  unref(): void {
    this.extraRefs--;
  }

  /** What all parents take together and what all of them share. */
  cumulativePerm(): PermPair {
    let perm = 0;
    let shared = PERM_ALL;
    for (const c of this.parents) {
      perm |= c.perm;
      shared &= c.shared;
    }
    return { perm, shared };
  }

  /**
   * A blkdebug event announced on this node (QEMU's BLKDBG_EVENT on a
   * child, bdrv_debug_event on the node itself). Only a blkdebug node acts
   * on it; it goes no further, through filters neither (bdrv_debug_event
   * calls the node's own driver only).
   */
  debugEvent(_event: string): void {}

  /**
   * QEMU's error_report from a driver: a line for stderr, through the
   * graph (the daemon decides the prefix), or straight there for a node
   * outside one.
   */
  errorReport(message: string): void {
    if (this.eventSink) this.eventSink({ kind: 'error-report', node: this, message });
    else process.stderr.write(`${message}\n`);
  }

  /** The driver's .bdrv_drain_begin when everything drains for shutdown (no drained_end follows: the node closes next). */
  drainForShutdown(): void {}
  /** A shutdown lets go what holds requests here by injection (blkdebug's breakpoints); the first step of a daemon's teardown. */
  releaseHeldRequests(): void {}

  /**
   * Closes this node and takes its links out of its children's parents
   * (the graph then refreshes the permissions of the children that stay).
   * It cannot fail, as bdrv_close cannot: a driver reports what it could
   * not do (qcow2's "Failed to flush the L2 table cache"), anything else
   * goes to the event sink as close-failed. Idempotent.
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      try {
        await this.doClose();
      } catch (error) {
        this.eventSink?.({ kind: 'close-failed', node: this, error });
      } finally {
        for (const c of this.edges) {
          const i = c.node.parents.indexOf(c);
          if (i >= 0) c.node.parents.splice(i, 1);
          if (c.blocker) c.node.blockers.remove(c.blocker);
          c.blocker = undefined;
        }
      }
    })();
    return this.closed;
  }

  get isClosed(): boolean {
    return this.closed !== undefined;
  }

  /**
   * The driver's part of bdrv_inactivate_recurse, before the node turns
   * inactive: everything it holds goes to its children (qcow2 stores its
   * bitmaps and caches), so another process can take the image over.
   */
  async inactivate(): Promise<void> {
    await this.flush();
  }

  /** The driver's bdrv_co_invalidate_cache, once the node is active again: what it cached may have changed under it. */
  async activate(): Promise<void> {}

  protected checkWritable(): void {
    // Before anything else, so a request to a driverless node counts nowhere (bdrv_co_pwritev_part's bdrv_is_inserted).
    if (this.ejected) throw new BlockError('IO', 'No medium found', { errno: 'ENOMEDIUM' });
    // No permission lets a write reach an inactive node in QEMU; one that gets here anyway is refused, not carried out.
    if (this.inactive) throw new BlockError('PERMISSION', 'Operation not permitted', { errno: 'EPERM' });
    if (this.readOnly) throw new BlockError('READ_ONLY', `Node '${this.nodeName}' is read-only`, { errno: 'EPERM' });
    // bdrv_has_readonly_bitmaps: a bitmap that cannot record the change refuses it (a qcow2 whose read-only reopen was abandoned).
    const bitmaps = this.dirtyBitmaps.all();
    for (let i = 0; i < bitmaps.length; i++) if (bitmaps[i]!.readOnly) throw new BlockError('READ_ONLY', 'Operation not permitted', { errno: 'EPERM' });
  }
}
