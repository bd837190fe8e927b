import { open, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { constants as os } from 'node:os';
import type { ByteFile, HostRun } from './byte-file.js';
import { BlockError, ioError } from './errors.js';
import { ImageLock, resolveLocking } from './file-lock.js';
import { IoMerger } from './io-merge.js';
import { LockDescription } from './lock-helper.js';
import { zeroRun } from './zero-scan.js';

const ENXIO = os.errno.ENXIO;

/** The file driver's `locking` option: whether the descriptor publishes its user's permissions as QEMU's lock bytes. */
export type LockingMode = 'on' | 'off' | 'auto';

export interface HostFileOpenOptions {
  readOnly?: boolean;
  /** Create the file if missing; with `exclusive`, fail if it exists. Without `keep`, an existing file is emptied. */
  create?: boolean;
  exclusive?: boolean;
  /** With `create`: leave an existing file's bytes alone (raw_co_create empties it only once its locks are taken). */
  keep?: boolean;
  /** Give the descriptor an ImageLock (`imageLock`) when this mode resolves to locking; none when absent. */
  locking?: LockingMode;
}

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
  /** The lock bytes of this descriptor (QEMU's file-posix locks), when it was opened with locking that resolved on. */
  readonly imageLock: ImageLock | undefined;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly readOnly: boolean,
    useLock: boolean,
  ) {
    this.io = new IoMerger(fh.fd);
    this.imageLock = useLock ? new ImageLock(fh.fd, path) : undefined;
  }

  /**
   * Opens the host file. With `locking`, whether to lock is settled (its
   * one-time probe runs alongside the open); a `locking=on` that cannot be
   * honoured fails before the file is looked at, as QEMU parses the option
   * before it opens the file.
   */
  static async open(path: string, opts: HostFileOpenOptions = {}): Promise<HostFile> {
    const readOnly = opts.readOnly ?? false;
    const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC } = constants;
    const flags = readOnly ? O_RDONLY : O_RDWR | (opts.create ? O_CREAT | (opts.exclusive ? O_EXCL : 0) | (opts.keep ? 0 : O_TRUNC) : 0);
    const useLock = opts.locking === undefined ? Promise.resolve(false) : resolveLocking(opts.locking);
    useLock.catch(() => undefined); // looked at below, whichever way the open goes
    let fh: FileHandle;
    try {
      fh = await open(path, flags, 0o644);
    } catch (err) {
      await useLock;
      const e = err as NodeJS.ErrnoException;
      const reason =
        e.code === 'ENOENT' ? 'No such file or directory'
        : e.code === 'EACCES' ? 'Permission denied'
        : e.code === 'EISDIR' ? 'Is a directory'
        : e.code === 'EEXIST' ? 'File exists'
        : e.message;
      throw new BlockError('IO', `Could not open '${path}': ${reason}`, { errno: e.code ?? 'EIO', cause: err });
    }
    try {
      return new HostFile(path, fh, readOnly, await useLock);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /**
   * Takes the lock bytes for `perm` and `shared` (a prepare and, once it
   * holds, a commit: one helper run) and checks them against every other
   * open file description of the file. Throws the ImageLockError on a
   * conflict, with the bytes back where they were. Nothing happens
   * without an ImageLock.
   */
  async lockPerms(perm: number, shared: number): Promise<void> {
    const lock = this.imageLock;
    if (!lock) return;
    // Like QEMU's commit, settling on what prepare took can only warn.
    const warning = await lock.acquire(perm, shared);
    if (warning) process.emitWarning(warning.message, 'BlockemuLockWarning');
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

  /** A description of the file that the lock helper holds for lseek (none: the helper could not open one). */
  private seeker: Promise<LockDescription | undefined> | undefined;

  /**
   * file-posix's find_allocation, as raw_co_block_status uses it: lseek
   * SEEK_DATA and SEEK_HOLE, asked of the lock helper (Node has no lseek
   * with a whence) on a description of its own. A hole up to the end of the
   * file is a hole; no answer at all (no perl, or a file system without
   * SEEK_DATA) is found by looking at the bytes instead.
   */
  async allocation(offset: number, length: number): Promise<HostRun> {
    this.check();
    this.seeker ??= LockDescription.open(this.fh.fd).then(
      (d) => (d instanceof LockDescription ? d : undefined),
      () => undefined,
    );
    const d = await this.seeker;
    const r = d?.live ? await d.seekData(offset).catch(() => undefined) : undefined;
    if (r && 'data' in r && r.data >= offset && (r.data > offset || r.hole > offset)) {
      return r.data > offset ? { length: Math.min(length, r.data - offset), zero: true } : { length: Math.min(length, r.hole - offset), zero: false };
    }
    // ENXIO: a hole to the end. Any other answer: no information, so no hole, as raw_co_block_status takes it.
    if (r) return { length, zero: 'errno' in r && r.errno === ENXIO };
    return zeroRun((buf, at) => this.readInto(buf, at), offset, length);
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      // The descriptor must outlive every operation issued on it: once closed, its number can be reused by another open.
      const drained = this.busy === 0 ? Promise.resolve() : new Promise<void>((r) => (this.idle = r));
      // The locks go first (release waits for lock changes under way), so that whoever is told the file is
      // closed finds them gone.
      const lock = this.imageLock;
      this.closing = drained
        .then(() => lock?.release())
        .then(() => this.seeker?.then((d) => d?.close()))
        .then(() => this.fh.close())
        .catch(() => undefined);
    }
    return this.closing;
  }
}
