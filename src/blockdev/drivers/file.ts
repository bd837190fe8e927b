import { HostFile, type LockingMode } from '../../image/file.js';
import { ChunkBitmap } from '../bitmap.js';
import { checkRequest, isZero, ZERO_CHUNK } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import { zeroRun } from '../../image/zero-scan.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';

const WRITTEN_CHUNK = 65536;

/** A protocol named by its file (file-posix has no strong options of its own). */
const FILE_NAMING: NamePolicy = { protocol: true, strong: [] };

/**
 * The `file` protocol driver: a host file as bytes. Its size is the file's
 * length, and writes past the end grow it (a format driver above allocates
 * by writing there), as QEMU's file-posix does.
 */
export class FileNode extends BlockNode {
  readonly driver = 'file';
  private length: number;

  /**
   * For a file that had no blocks allocated when opened (a freshly created
   * target): the 64 KiB chunks written since. A zero write to chunks never
   * written needs neither a write nor a read to know they are zero.
   */
  private written: ChunkBitmap | undefined;

  private constructor(
    name: string,
    readonly file: HostFile,
    length: number,
    fresh: boolean,
  ) {
    super(name, file.readOnly);
    this.length = length;
    if (fresh && !file.readOnly) this.written = new ChunkBitmap(length, WRITTEN_CHUNK);
  }

  /**
   * Opens the host file. With locking on (auto: where OFD locks can be
   * taken) the node publishes its permissions as QEMU's lock bytes, so
   * other processes — QEMU's tools among them — and other nodes on the
   * same file refuse or allow it as QEMU would.
   */
  static async open(name: string, filename: string, readOnly: boolean, locking: LockingMode = 'auto'): Promise<FileNode> {
    const file = await HostFile.open(filename, { readOnly, locking });
    try {
      const length = await file.size();
      const node = new FileNode(name, file, length, length > 0 && (await file.allocatedBytes()) === 0);
      node.openFilename = filename;
      return node;
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  /** The lock bytes of this node's descriptor (the file's), when locking is on. */
  private get lock() {
    return this.file.imageLock;
  }

  override checkPerm(perm: number, shared: number): Promise<void> {
    return this.lock ? this.lock.prepare(perm, shared) : Promise.resolve();
  }
  override async commitPerm(perm: number, shared: number): Promise<void> {
    // Like QEMU, a byte that fails to change here is only worth a warning: the permissions are in force either way.
    const warning = await this.lock?.commit(perm, shared);
    if (warning) process.emitWarning(warning.message, 'BlockemuLockWarning');
  }
  override async abortPerm(): Promise<void> {
    await this.lock?.abort();
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

  protected async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    this.noteWritten(offset, data.length);
    await this.file.write(offset, data);
    this.length = Math.max(this.length, offset + data.length);
    if (flags.fua) await this.file.flush();
  }

  /**
   * Node has no fallocate, so zeroes are written — except where the file
   * already reads as zero (a hole, or zeroes): those ranges are left alone,
   * which keeps sparse targets sparse and costs a read from the page cache
   * instead of a write. As with QEMU's fallocate path, a write racing with
   * this on the same bytes has no defined winner.
   */
  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
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
    if (flags.fua) await this.file.flush();
  }

  /** Sets the file's length (blockdev-create formats an image into a file node, as QEMU's blk_truncate). */
  async truncate(length: number): Promise<void> {
    this.written = undefined;
    await this.file.truncate(length);
    this.length = length;
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

  /** Discard is advisory; Node has no hole punching, so the bytes stay (QEMU may keep them too). */
  protected async doDiscard(): Promise<void> {
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

  async imageInfo(): Promise<NodeImageInfo> {
    return { filename: this.filename, format: 'file', virtualSize: this.size(), actualSize: await this.file.allocatedBytes() };
  }

  /** The descriptor closes (and its locks with it) only once no lock change is under way on it (HostFile.close waits for that). */
  protected async doClose(): Promise<void> {
    await this.file.close();
  }
}
