import { BlockError } from './errors.js';
import type { ByteFile } from './byte-file.js';
import { createHostFile } from './file-create.js';
import { HostFile } from './file.js';
import { checkRequest, ZERO_CHUNK } from './request.js';
import { zeroRun } from './zero-scan.js';
import { checkResizeRequest, resizeFile, writeZeroes } from './resize.js';
import type { BlockImage, Extent, ImageInfo, ResizeOptions, WriteOptions, WriteZeroesOptions } from './types.js';

/** The block layer counts a node's length in whole 512-byte sectors (bdrv_getlength is total_sectors × 512): a file's tail reads as zeroes up to there. */
const inSectors = (bytes: number) => Math.ceil(bytes / 512) * 512;

/** A raw image: guest offset = file offset; the virtual size is the file size in whole sectors. */
export class RawImage implements BlockImage {
  readonly format = 'raw' as const;
  private closing: Promise<void> | undefined;

  /** The size in whole sectors (what QEMU reports and serves). */
  private virtualSize: number;

  private constructor(
    private readonly file: ByteFile,
    /** The file's own length: past it, up to the next sector, reads are zeroes and block status says so. */
    private fileLength: number,
  ) {
    this.virtualSize = inSectors(fileLength);
  }

  get filename(): string {
    return this.file.path;
  }
  get readOnly(): boolean {
    return this.file.readOnly;
  }

  static async open(path: string, opts: { readOnly?: boolean } = {}): Promise<RawImage> {
    const file = await HostFile.open(path, { readOnly: opts.readOnly });
    try {
      return new RawImage(file, await file.size());
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  /** Wraps an already-open file. */
  static async fromFile(file: ByteFile): Promise<RawImage> {
    return new RawImage(file, await file.size());
  }

  /** raw_co_create_opts: the size rounded up to whole 512-byte sectors, then the host file as file-posix creates it. */
  static async create(path: string, size: number): Promise<void> {
    await createHostFile(path, Math.ceil(size / 512) * 512);
  }

  size(): number {
    return this.virtualSize;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    checkRequest('read', offset, length, this.virtualSize);
    return this.file.read(offset, length);
  }

  async readInto(out: Uint8Array, offset: number): Promise<void> {
    checkRequest('read', offset, out.length, this.virtualSize);
    await this.file.readInto(out, offset);
  }

  async write(offset: number, data: Uint8Array, opts?: WriteOptions): Promise<void> {
    this.checkWritable();
    checkRequest('write', offset, data.length, this.virtualSize);
    await this.file.write(offset, data);
    this.fileLength = Math.max(this.fileLength, offset + data.length);
    if (opts?.fua) await this.flush();
  }

  async writeZeroes(offset: number, length: number, opts?: WriteZeroesOptions): Promise<void> {
    this.checkWritable();
    checkRequest('write zeroes', offset, length, this.virtualSize);
    // Node cannot punch holes (no fallocate); zeroes are written in bounded chunks.
    for (let done = 0; done < length; ) {
      const n = Math.min(ZERO_CHUNK.length, length - done);
      await this.file.write(offset + done, ZERO_CHUNK.subarray(0, n));
      done += n;
    }
    this.fileLength = Math.max(this.fileLength, offset + length);
    if (opts?.fua) await this.flush();
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    checkRequest('discard', offset, length, this.virtualSize);
    // QEMU's tools punch a hole here (file-posix, discard=unmap), so the range reads as zeroes afterwards. Node has no
    // hole punching: zeroes are written, the file stays as long (and what a reader sees is the same).
    await writeZeroes(this.file, offset, Math.min(offset + length, this.virtualSize));
    this.fileLength = Math.max(this.fileLength, Math.min(offset + length, this.virtualSize));
  }

  flush(): Promise<void> {
    return this.file.flush();
  }

  async blockStatus(offset: number, length: number): Promise<Extent> {
    checkRequest('block status', offset, length, this.virtualSize);
    if (length === 0) return { offset, length: 0, data: false, zero: true, allocated: true, depth: 0, hostOffset: offset, filename: this.filename };
    // The sector's tail past the file's end: zeroes, as file-posix says of what lies past EOF.
    if (offset >= this.fileLength) return { offset, length, data: false, zero: true, allocated: true, depth: 0, hostOffset: offset, filename: this.filename };
    length = Math.min(length, this.fileLength - offset);
    if (this.file.blockStatus) return { ...(await this.file.blockStatus(offset, length)), offset, depth: 0 };
    const { length: run, zero } = await zeroRun((b, o) => this.file.readInto(b, o), offset, length);
    return { offset, length: run, data: !zero, zero, allocated: true, depth: 0, hostOffset: offset, filename: this.filename };
  }

  actualSize(): Promise<number> {
    return this.file.allocatedBytes();
  }

  info(): ImageInfo {
    return { format: 'raw', filename: this.filename, virtualSize: this.virtualSize };
  }

  /**
   * The file takes the new size, with file-posix's rules (src/image/resize.ts):
   * a raw image is its file. Requests in flight must be drained first.
   */
  async resize(newSize: number, opts: ResizeOptions = {}): Promise<void> {
    checkResizeRequest(newSize, this.readOnly);
    await resizeFile(this.file, newSize, opts.preallocation ?? 'off');
    this.fileLength = await this.file.size();
    this.virtualSize = inSectors(this.fileLength);
  }

  backing(): undefined {
    return undefined;
  }

  private checkWritable(): void {
    if (this.file.readOnly) throw new BlockError('READ_ONLY', `Image '${this.filename}' is read-only`, { errno: 'EPERM' });
  }

  close(): Promise<void> {
    this.closing ??= this.file.close();
    return this.closing;
  }
}
