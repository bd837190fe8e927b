import { stat, unlink } from 'node:fs/promises';
import { BlockError } from '../../image/errors.js';
import type { HostRun } from '../../image/byte-file.js';
import { HostFile, type LockingMode } from '../../image/file.js';
import { untouchedSinceCreated } from '../../image/file-create.js';
import { resizeFile } from '../../image/resize.js';
import type { Preallocation } from '../../image/types.js';
import { ChunkBitmap } from '../bitmap.js';
import { checkRequest, isZero, ZERO_CHUNK } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import { zeroRun } from '../../image/zero-scan.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type DriverStats, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';
import { absorb, putBack } from '../options.js';
import type { ReopenState, StagedReopen } from '../reopen-driver.js';
import { PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../../image/perm.js';

const WRITTEN_CHUNK = 65536;

/** file-posix's runtime options (raw_runtime_opts). */
const FILE_OPTIONS = ['filename', 'aio', 'aio-max-batch', 'locking', 'pr-manager', 'drop-cache', 'x-check-cache-dropped'];

/** A protocol named by its file (file-posix has no strong options of its own). */
const FILE_NAMING: NamePolicy = { protocol: true, strong: [] };

/**
 * The `file` protocol driver: a host file as bytes. Its size is the file's
 * length, and writes past the end grow it (a format driver above allocates
 * by writing there), as QEMU's file-posix does.
 */
export class FileNode extends BlockNode {
  /** 'file', or host_device / host_cdrom for the same driver over a device (file-posix's three drivers). */
  driver: 'file' | 'host_device' | 'host_cdrom' = 'file';
  private length: number;

  /**
   * For a file that had no blocks allocated when opened, or that
   * createHostFile made and nothing touched since (a freshly created
   * target): the 64 KiB chunks written since. A zero write to chunks never
   * written needs neither a write nor a read to know they are zero.
   */
  private written: ChunkBitmap | undefined;

  private constructor(
    name: string,
    /** The descriptor in use; a reopen or auto-read-only may replace it by one of another mode. */
    private file: HostFile,
    length: number,
    fresh: boolean,
    readOnly: boolean,
    /** auto-read-only: the file is open for writing only while some user writes (BDRV_O_AUTO_RDONLY). */
    private autoReadOnly: boolean,
  ) {
    super(name, readOnly);
    this.length = length;
    if (fresh && !file.readOnly) this.written = new ChunkBitmap(length, WRITTEN_CHUNK);
  }

  /**
   * Opens the host file. With locking on (auto: where OFD locks can be
   * taken) the node publishes its permissions as QEMU's lock bytes, so
   * other processes — QEMU's tools among them — and other nodes on the
   * same file refuse or allow it as QEMU would. With auto-read-only the
   * file is opened read-only until a user needs to write (raw_parse_flags).
   */
  static async open(name: string, filename: string, o: { readOnly: boolean; autoReadOnly?: boolean; locking?: LockingMode; driver?: 'host_device' | 'host_cdrom' }): Promise<FileNode> {
    const autoReadOnly = o.autoReadOnly ?? false;
    const file = await HostFile.open(filename, { readOnly: o.readOnly || autoReadOnly, locking: o.locking ?? 'auto' });
    try {
      // raw_open_common's fstat: the file driver takes regular files only (host_device and host_cdrom are other drivers).
      const st = await stat(filename);
      if (o.driver !== undefined) {
        if (!st.isCharacterDevice() && !st.isBlockDevice()) throw new BlockError('INVALID_ARGUMENT', `'${o.driver}' driver requires '${filename}' to be either a character or block device`);
      } else if (!st.isFile()) throw new BlockError('INVALID_ARGUMENT', `'file' driver requires '${filename}' to be a regular file`);
      const length = await file.size();
      const fresh = !file.readOnly && length > 0 && ((await file.allocatedBytes()) === 0 || (await untouchedSinceCreated(file)));
      const node = new FileNode(name, file, length, fresh, o.readOnly, autoReadOnly);
      if (o.driver !== undefined) node.driver = o.driver;
      node.openFilename = filename;
      return node;
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  /** The lock bytes of this node's descriptor (the HostFile's), when locking is on. */
  private get lock() {
    return this.file.imageLock;
  }
  /** A reopen under way (s->reopen_state): its flags, not the node's, decide the descriptor's mode while permissions are checked. */
  private reopening: { readOnly: boolean; autoReadOnly: boolean } | undefined;
  /** A descriptor of the other mode for the permissions being checked, holding their lock bytes too (perm_change_fd). */
  private next: { file: HostFile } | undefined;

  /**
   * raw_check_perm: a descriptor of the mode the permissions need is opened
   * when the current one has the other (a reopen between read-only and
   * read-write, auto-read-only gaining or losing its writers); the lock
   * bytes are checked on the current descriptor — the new one would
   * conflict with it — then copied onto the new one, so both hold them
   * until the switch.
   */
  override async checkPerm(perm: number, shared: number): Promise<void> {
    const flags = this.reopening ?? { readOnly: this.readOnly, autoReadOnly: this.autoReadOnly };
    const writers = (perm & (PERM_WRITE | PERM_WRITE_UNCHANGED | PERM_RESIZE)) !== 0;
    const readWrite = flags.autoReadOnly ? writers : !flags.readOnly;
    if (this.next && this.next.file.readOnly === readWrite) await this.dropNext();
    if (!this.next && this.file.readOnly === readWrite) {
      // Locked as the current one is (whether locks work is known by now).
      this.next = { file: await HostFile.open(this.filename, { readOnly: !readWrite, locking: this.lock ? 'on' : undefined }) };
    }
    try {
      await this.lock?.prepare(perm, shared);
    } catch (err) {
      await this.dropNext();
      throw err;
    }
    const nextLock = this.next?.file.imageLock;
    if (!this.lock || !nextLock) return;
    const failure = await nextLock.commit(perm, shared);
    if (failure) {
      await this.lock.abort();
      await this.dropNext();
      throw failure;
    }
  }

  /** raw_set_perm: the new descriptor (if any) replaces the old one, whose locks go with it; then the bytes settle. */
  override async commitPerm(perm: number, shared: number): Promise<void> {
    const next = this.next;
    if (next) {
      this.next = undefined;
      const old = this.file;
      this.file = next.file;
      // Its locks go with it once no lock change is under way on it (HostFile.close waits for that).
      await old.close();
    }
    // Like QEMU, a byte that fails to change here is only worth a warning: the permissions are in force either way.
    const warning = await this.lock?.commit(perm, shared);
    if (warning) process.emitWarning(warning.message, 'BlockemuLockWarning');
  }
  override async abortPerm(): Promise<void> {
    await this.dropNext();
    await this.lock?.abort();
  }

  /** The file's length is read again: another process (a migration's source) may have grown it meanwhile. */
  override async activate(): Promise<void> {
    this.length = await this.file.size();
  }

  /** Closes a descriptor opened for a permission change that does not happen (its locks go with it). */
  private async dropNext(): Promise<void> {
    const next = this.next;
    if (!next) return;
    this.next = undefined;
    await next.file.close();
  }

  /**
   * raw_reopen_prepare: file-posix changes none of its options but
   * x-check-cache-dropped and drop-cache (which blockemu has no use for);
   * the others go back for the generic comparison to refuse a change. The
   * new flags are kept for checkPerm, which switches the descriptor.
   */
  override async prepareReopen(state: ReopenState): Promise<StagedReopen> {
    const opts = absorb(state.options, FILE_OPTIONS);
    opts.delete('drop-cache');
    opts.delete('x-check-cache-dropped');
    putBack(state.options, opts);
    this.reopening = { readOnly: state.readOnly, autoReadOnly: state.autoReadOnly };
    return {
      commit: () => {
        this.autoReadOnly = state.autoReadOnly;
        this.reopening = undefined;
      },
      abort: () => {
        this.reopening = undefined;
      },
    };
  }

  override get mutableOptions(): readonly string[] {
    return ['x-check-cache-dropped'];
  }

  get filename(): string {
    return this.file.path;
  }

  /**
   * The length in whole sectors, as QEMU's block layer counts every node
   * (bdrv_getlength rounds up): the bytes past the file's end in its last
   * sector read as zeroes, and a write there grows the file.
   */
  size(): number {
    return Math.ceil(this.length / 512) * 512;
  }

  override get namePolicy(): NamePolicy {
    return FILE_NAMING;
  }

  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.file.read(offset, length);
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.file.readInto(buf, offset);
  }

  protected async doWrite(offset: number, data: Uint8Array, _flags: WriteFlags): Promise<void> {
    this.noteWritten(offset, data.length);
    await this.file.write(offset, data);
    this.length = Math.max(this.length, offset + data.length);
  }

  /**
   * Node has no fallocate, so zeroes are written — except where the file
   * already reads as zero (a hole, or zeroes): those ranges are left alone,
   * which keeps sparse targets sparse and costs a read from the page cache
   * instead of a write. As with QEMU's fallocate path, a write racing with
   * this on the same bytes has no defined winner.
   */
  protected async doWriteZeroes(offset: number, length: number, _flags: ZeroFlags): Promise<void> {
    const end = offset + length;
    const scratch = new Uint8Array(Math.min(ZERO_CHUNK.length, length));
    for (let off = offset; off < end; off += ZERO_CHUNK.length) {
      const n = Math.min(ZERO_CHUNK.length, end - off);
      if (this.neverWritten(off, n)) continue;
      if (off + n <= this.length) {
        const current = scratch.subarray(0, n);
        await this.file.readInto(current, off);
        if (isZero(current)) continue;
      }
      this.noteWritten(off, n);
      await this.file.write(off, ZERO_CHUNK.subarray(0, n));
    }
    this.length = Math.max(this.length, end);
  }

  /** file-posix's truncate (raw_co_truncate on a regular file): preallocation as resizeFile does it, then the new length. */
  protected override async doResize(newSize: number, prealloc: Preallocation): Promise<void> {
    this.written = undefined;
    try {
      await resizeFile(this.file, newSize, prealloc);
    } finally {
      this.length = await this.file.size();
    }
  }

  /** Marks bytes about to be written (beyond the tracked length, tracking stops: no guess is safe there). */
  private noteWritten(offset: number, length: number): void {
    const w = this.written;
    if (!w || length === 0) return;
    if (offset + length > w.size) {
      this.written = undefined;
      return;
    }
    w.setRange(offset, length);
  }

  /** Whether [offset, offset+length) lies in chunks nothing has written since a fresh open. */
  private neverWritten(offset: number, length: number): boolean {
    const w = this.written;
    if (!w || offset + length > w.size) return false;
    const last = Math.floor((offset + length - 1) / WRITTEN_CHUNK);
    for (let c = Math.floor(offset / WRITTEN_CHUNK); c <= last; c++) if (w.get(c)) return false;
    return true;
  }

  /**
   * A discard reaches a file node only with discard=unmap, where QEMU
   * punches a hole and the range reads back as zeroes. Node cannot punch
   * holes: the range is zeroed as write-zeroes does it (chunks already
   * zero are left alone), past the file's end nothing. Counted as a
   * discard that worked.
   */
  protected async doDiscard(offset: number, length: number): Promise<void> {
    const end = Math.min(offset + length, this.length);
    if (end > offset) await this.doWriteZeroes(offset, end - offset, {});
    this.discards.discardNbOk++;
    this.discards.discardBytesOk += length;
  }

  /** raw_account_discard's counters: none fails here, as nothing is asked of the host. */
  private readonly discards: DriverStats = { driver: 'file', discardNbOk: 0, discardNbFailed: 0, discardBytesOk: 0 };

  override specificStats(): DriverStats {
    return { ...this.discards };
  }

  protected doFlush(): Promise<void> {
    return this.file.flush();
  }
  override async startWriteback(): Promise<void> {
    if (!this.settings.cacheNoFlush) await this.file.flush();
  }

  /** Holes as QEMU's file-posix finds them with SEEK_HOLE, found here by looking at the data (zeroes read as a hole). */
  async blockStatus(offset: number, length: number, opts: StatusOptions = {}): Promise<Extent> {
    checkRequest('block status', offset, length, this.size());
    const inFile = Math.min(length, this.length - offset);
    // Past the end of the file (in its last sector) is a hole, as SEEK_HOLE finds it.
    const run =
      length === 0 || offset >= this.length
        ? { length, zero: true }
        : opts.wantZero === false
          ? { length: inFile, zero: false }
          : await zeroRun((b, o) => this.file.readInto(b, o), offset, inFile);
    return { offset, length: run.length, data: !run.zero, zero: run.zero, allocated: true, depth: 0, hostOffset: offset, filename: this.filename };
  }

  /** Where the host keeps holes (file-posix's find_allocation): what a qcow2 image above asks of its clusters' bytes. */
  override hostAllocation(offset: number, length: number): Promise<HostRun> {
    return this.file.allocation(offset, length);
  }

  async imageInfo(): Promise<NodeImageInfo> {
    return { filename: this.filename, format: 'file', virtualSize: this.size(), actualSize: await this.file.allocatedBytes() };
  }

  /** The descriptors close (and their locks with them) only once no lock change is under way on them (HostFile.close waits for that). */
  protected async doClose(): Promise<void> {
    await this.dropNext();
    await this.file.close();
    // BDRV_O_TEMPORARY (a -snapshot overlay's file): gone with the node.
    if (this.temporary) await unlink(this.filename).catch(() => undefined);
  }

  /** The file is a temporary one (bdrv_append_temp_snapshot's): removed when the node closes. */
  temporary = false;
}
