import { HostFile } from '../../image/file.js';
import { allocateFirstBlock, untouchedSinceCreated } from '../../image/file-create.js';
import { ChunkBitmap } from '../bitmap.js';
import { checkRequest, isZero, ZERO_CHUNK } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import { zeroRun } from '../../image/zero-scan.js';
import { BlockNode, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';

const WRITTEN_CHUNK = 65536;

/**
 * The `file` protocol driver: a host file as bytes. Its size is the file's
 * length, and writes past the end grow it (a format driver above allocates
 * by writing there), as QEMU's file-posix does.
 */
export class FileNode extends BlockNode {
  readonly driver = 'file';
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
    readonly file: HostFile,
    length: number,
    fresh: boolean,
  ) {
    super(name, file.readOnly);
    this.length = length;
    if (fresh && !file.readOnly) this.written = new ChunkBitmap(length, WRITTEN_CHUNK);
  }

  static async open(name: string, filename: string, readOnly: boolean): Promise<FileNode> {
    const file = await HostFile.open(filename, { readOnly });
    const length = await file.size();
    const fresh = !readOnly && length > 0 && ((await file.allocatedBytes()) === 0 || (await untouchedSinceCreated(file)));
    return new FileNode(name, file, length, fresh);
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

  /** Sets the file's length (blockdev-create formats an image into a file node, as QEMU's blk_truncate). */
  async truncate(length: number): Promise<void> {
    this.written = undefined;
    const wasEmpty = this.length === 0;
    try {
      await this.file.truncate(length);
      // raw_regular_truncate: a file that grows from empty gets its first block written.
      if (wasEmpty && length > 0) await allocateFirstBlock(this.file, length);
    } finally {
      this.noteModified();
    }
    // The first block may have lengthened a file shorter than 512 bytes.
    this.length = await this.file.size();
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

  protected doClose(): Promise<void> {
    return this.file.close();
  }
}
