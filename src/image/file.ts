import { open, type FileHandle } from 'node:fs/promises';
import type { ByteFile } from './byte-file.js';
import { BlockError, ioError } from './errors.js';
import { IoMerger } from './io-merge.js';

/**
 * Positional async I/O on one host file descriptor. Reads past end of file
 * return zeroes (a sparse tail reads as zeroes, as on a block device).
 * Requests go through an IoMerger on the FileHandle's descriptor: the
 * callback API costs less per call than FileHandle's methods, and adjacent
 * requests of one turn become one system call. The descriptor stays owned
 * by the FileHandle (opened and closed through it).
 */
export class HostFile implements ByteFile {
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Reads and writes under way on the raw descriptor: close waits for them (FileHandle does not know of them). */
  private busy = 0;
  private idle: (() => void) | undefined;
  private readonly io: IoMerger;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly readOnly: boolean,
  ) {
    this.io = new IoMerger(fh.fd);
  }

  static async open(path: string, opts: { readOnly?: boolean; create?: boolean; exclusive?: boolean } = {}): Promise<HostFile> {
    const readOnly = opts.readOnly ?? false;
    const flags = readOnly ? 'r' : opts.create ? (opts.exclusive ? 'wx+' : 'w+') : 'r+';
    try {
      const fh = await open(path, flags, 0o644);
      return new HostFile(path, fh, readOnly);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const reason =
        e.code === 'ENOENT' ? 'No such file or directory'
        : e.code === 'EACCES' ? 'Permission denied'
        : e.code === 'EISDIR' ? 'Is a directory'
        : e.code === 'EEXIST' ? 'File exists'
        : e.message;
      throw new BlockError('IO', `Could not open '${path}': ${reason}`, { errno: e.code ?? 'EIO', cause: err });
    }
  }

  /** The descriptor (its open file description carries the image locks). */
  get fd(): number {
    return this.fh.fd;
  }

  private check(): void {
    if (this.closed) throw new BlockError('CLOSED', `'${this.path}' is closed`);
  }

  /** Marks one descriptor operation done; the last one lets a waiting close proceed. */
  private done(): void {
    if (--this.busy === 0 && this.idle) {
      const go = this.idle;
      this.idle = undefined;
      go();
    }
  }

  /** Reads exactly `length` bytes into a new buffer; bytes past end of file are zero. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    await this.readInto(buf, offset);
    return buf;
  }

  async readInto(buf: Uint8Array, offset: number): Promise<void> {
    this.check();
    this.busy++;
    try {
      await this.io.read(buf, offset);
    } catch (err) {
      throw ioError(`read of '${this.path}' at ${offset} failed`, err);
    } finally {
      this.done();
    }
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.writev(offset, [data]);
  }

  /** Writes several buffers back to back at `offset` (one system call when the kernel takes them whole). */
  async writev(offset: number, bufs: Uint8Array[]): Promise<void> {
    this.check();
    if (this.readOnly) throw new BlockError('READ_ONLY', `'${this.path}' is opened read-only`);
    this.busy++;
    try {
      await this.io.write(bufs, offset);
    } catch (err) {
      throw ioError(`write to '${this.path}' at ${offset} failed`, err);
    } finally {
      this.done();
    }
  }

  async size(): Promise<number> {
    this.check();
    try {
      return (await this.fh.stat()).size;
    } catch (err) {
      throw ioError(`stat of '${this.path}' failed`, err);
    }
  }

  /** Bytes allocated on disk (st_blocks * 512), as qemu-img's actual-size. */
  async allocatedBytes(): Promise<number> {
    this.check();
    try {
      return (await this.fh.stat()).blocks * 512;
    } catch (err) {
      throw ioError(`stat of '${this.path}' failed`, err);
    }
  }

  /** What changes with any write, truncate or replacement of the file: device, inode, length, blocks, change time. */
  async stamp(): Promise<string> {
    this.check();
    try {
      const st = await this.fh.stat({ bigint: true });
      return `${st.dev}:${st.ino}:${st.size}:${st.blocks}:${st.ctimeNs}`;
    } catch (err) {
      throw ioError(`stat of '${this.path}' failed`, err);
    }
  }

  async truncate(length: number): Promise<void> {
    this.check();
    try {
      await this.fh.truncate(length);
    } catch (err) {
      throw ioError(`truncate of '${this.path}' failed`, err);
    }
  }

  async flush(): Promise<void> {
    this.check();
    if (this.readOnly) return;
    this.busy++;
    try {
      await this.fh.datasync();
    } catch (err) {
      throw ioError(`flush of '${this.path}' failed`, err);
    } finally {
      this.done();
    }
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      // The descriptor must outlive every operation issued on it: once closed, its number can be reused by another open.
      const drained = this.busy === 0 ? Promise.resolve() : new Promise<void>((r) => (this.idle = r));
      this.closing = drained.then(() => this.fh.close()).catch(() => undefined);
    }
    return this.closing;
  }
}
