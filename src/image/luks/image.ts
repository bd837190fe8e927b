import { unlink } from 'node:fs/promises';
import type { ByteFile } from '../byte-file.js';
import { type CreateEncryption, createLuksArea } from '../crypto/create.js';
import { luksInfo } from '../crypto/info.js';
import { amendLuksKeys, type LuksAmendOptions } from '../crypto/amend.js';
import { LUKS_HEADER_BYTES, type LuksHeader, parseLuksHeader, unlockLuks } from '../crypto/luks.js';
import { CRYPT_SECTOR, type SectorCipher } from '../crypto/sector-cipher.js';
import { BlockError } from '../errors.js';
import { openNewFile } from '../file-create.js';
import { RangeLocks } from '../qcow2/locks.js';
import { checkRequest } from '../request.js';
import { checkResizeRequest, resizeFile } from '../resize.js';
import type { BlockImage, Extent, ImageInfo, Preallocation, ResizeOptions, WriteOptions, WriteZeroesOptions } from '../types.js';

/** How a luks image is opened: its key-secret's bytes, looked up only when the image needs them. */
export interface LuksOpenOptions {
  key?: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
  /** qemu-img info's BDRV_O_NO_IO: the header is read and checked, no key slot unlocked, no data served. */
  metadataOnly?: boolean;
}

/** At most this much guest data is encrypted or decrypted at a time (BLOCK_CRYPTO_MAX_IO_SIZE, QEMU's bounce buffer). */
const MAX_IO = 1 << 20;

const invalid = (message: string) => new BlockError('INVALID_ARGUMENT', message, { errno: 'EINVAL' });

/** The block layer counts a node's length in whole 512-byte sectors (bdrv_getlength is total_sectors × 512). */
const inSectors = (bytes: number) => Math.ceil(bytes / CRYPT_SECTOR) * CRYPT_SECTOR;

/**
 * The `luks` format (block/crypto.c): a LUKS1 header and its key material,
 * then the guest's data encrypted in 512-byte sectors numbered from the
 * payload's start. The virtual size is what the file holds past the
 * payload offset. There is no allocation to tell: every sector is data,
 * zeroes are written encrypted, and a discard does nothing, as in QEMU,
 * whose driver has none of block status, write-zeroes or discard.
 */
export class LuksImage implements BlockImage {
  readonly format = 'luks' as const;
  /** Read-modify-writes of partial sectors, and the writes they overlap, go one at a time. */
  private readonly ranges = new RangeLocks();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly file: ByteFile,
    readonly header: LuksHeader,
    private readonly cipher: SectorCipher | undefined,
    private virtualSize: number,
    private readonly key: LuksOpenOptions['key'],
  ) {}

  get filename(): string {
    return this.file.path;
  }
  get readOnly(): boolean {
    return this.file.readOnly;
  }
  /** Where the encrypted data starts in the file. */
  get payloadOffset(): number {
    return this.header.payloadOffsetSector * CRYPT_SECTOR;
  }

  /**
   * qcrypto_block_luks_open on the file's first bytes, in its order and
   * words: the key-secret asked for first (unless only metadata is
   * wanted), the header checked, then a key slot unlocked with it. A file
   * shorter than its payload offset has no length (block_crypto_getlength's
   * EIO). The file stays the caller's if this fails.
   */
  static async openFile(file: ByteFile, opts: LuksOpenOptions = {}): Promise<LuksImage> {
    let password: Uint8Array | undefined;
    if (!opts.metadataOnly) {
      if (opts.key === undefined) throw invalid("Parameter 'key-secret' is required for cipher");
      password = typeof opts.key === 'function' ? await opts.key() : opts.key;
    }
    const header = parseLuksHeader(await file.read(0, LUKS_HEADER_BYTES));
    const cipher = password ? await unlockLuks(header, password, (o, l) => file.read(o, l)) : undefined;
    const length = await file.size();
    const payload = header.payloadOffsetSector * CRYPT_SECTOR;
    if (payload > length) throw new BlockError('IO', 'Could not refresh total sector count: Input/output error', { errno: 'EIO' });
    return new LuksImage(file, header, cipher, inSectors(length - payload), opts.key);
  }

  /**
   * block_crypto_co_create_opts_luks on a host file: the file made empty,
   * the LUKS header and slot 0 worked out, the file sized to the header
   * and `size` bytes of payload (as preallocation says; metadata means
   * nothing here), then the header and key material written. On failure
   * the file is removed, as QEMU removes it.
   */
  static async create(path: string, size: number, enc: CreateEncryption, prealloc: Preallocation = 'off'): Promise<void> {
    const file = await openNewFile(path);
    try {
      await LuksImage.format(file, size, enc, prealloc);
      await file.close();
    } catch (err) {
      await file.close().catch(() => undefined);
      await unlink(path).catch(() => undefined);
      throw err;
    }
  }

  /** block_crypto_co_create_generic on an empty file (blockdev-create's, or one create has just made). */
  static async format(file: ByteFile, size: number, enc: CreateEncryption, prealloc: Preallocation = 'off'): Promise<void> {
    const area = await createLuksArea({ ...enc, optPrefix: '' });
    if (size + area.bytes.length > Number.MAX_SAFE_INTEGER) throw new BlockError('INVALID_ARGUMENT', 'The requested file size is too large', { errno: 'EFBIG' });
    await resizeFile(file, size + area.bytes.length, prealloc === 'metadata' ? 'off' : prealloc);
    for (const w of area.written) {
      try {
        await file.write(w.offset, area.bytes.subarray(w.offset, w.offset + w.length));
      } catch (err) {
        throw new BlockError('IO', `Could not write encryption header: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
    await file.flush();
  }

  size(): number {
    return this.virtualSize;
  }

  private sectorCipher(): SectorCipher {
    if (!this.cipher) throw new BlockError('INVALID_ARGUMENT', 'the image is encrypted and was opened without its key', { errno: 'EIO' });
    return this.cipher;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(out, offset);
    return out;
  }

  /** Whole sectors read and decrypted, a bounce buffer's worth at a time; the part asked for copied out. */
  async readInto(out: Uint8Array, offset: number): Promise<void> {
    checkRequest('read', offset, out.length, this.virtualSize);
    const c = this.sectorCipher();
    const start = offset - (offset % CRYPT_SECTOR);
    const end = Math.ceil((offset + out.length) / CRYPT_SECTOR) * CRYPT_SECTOR;
    for (let at = start; at < end; at += MAX_IO) {
      const n = Math.min(MAX_IO, end - at);
      const buf = new Uint8Array(n);
      await this.file.readInto(buf, this.payloadOffset + at);
      c.decryptInPlace(at / CRYPT_SECTOR, buf);
      const from = Math.max(offset, at);
      const to = Math.min(offset + out.length, at + n);
      out.set(buf.subarray(from - at, to - at), from - offset);
    }
  }

  async write(offset: number, data: Uint8Array, opts?: WriteOptions): Promise<void> {
    this.checkWritable();
    checkRequest('write', offset, data.length, this.virtualSize);
    await this.writeSectors(offset, data.length, data);
    if (opts?.fua) await this.flush();
  }

  /**
   * The block layer has no write-zeroes for this driver: zeroes are
   * written as data, encrypted (bdrv_co_do_pwrite_zeroes's bounce buffer).
   */
  async writeZeroes(offset: number, length: number, opts?: WriteZeroesOptions): Promise<void> {
    this.checkWritable();
    checkRequest('write zeroes', offset, length, this.virtualSize);
    await this.writeSectors(offset, length, undefined);
    if (opts?.fua) await this.flush();
  }

  /**
   * [offset, offset+length) widened to whole sectors: the partial sectors
   * at either end read first (request_alignment's read-modify-write),
   * the new bytes (`data`, or zeroes) put in, and all of it written
   * encrypted, a bounce buffer's worth at a time, with the range held.
   */
  private async writeSectors(offset: number, length: number, data: Uint8Array | undefined): Promise<void> {
    const c = this.sectorCipher();
    const start = offset - (offset % CRYPT_SECTOR);
    const end = Math.ceil((offset + length) / CRYPT_SECTOR) * CRYPT_SECTOR;
    const release = await this.ranges.acquire(start, end);
    try {
      for (let at = start; at < end; at += MAX_IO) {
        const n = Math.min(MAX_IO, end - at);
        const buf = new Uint8Array(n);
        const from = Math.max(offset, at);
        const to = Math.min(offset + length, at + n);
        // Only a partial sector at either end needs what is there now.
        if (from > at || to < at + n) {
          await this.file.readInto(buf, this.payloadOffset + at);
          c.decryptInPlace(at / CRYPT_SECTOR, buf);
        }
        if (data) buf.set(data.subarray(from - offset, to - offset), from - at);
        else buf.fill(0, from - at, to - at);
        await this.file.write(this.payloadOffset + at, c.encrypt(at / CRYPT_SECTOR, buf));
      }
    } finally {
      release();
    }
  }

  /**
   * qemu-img amend's key slot changes (block_crypto_amend_options_luks):
   * a slot added is unlocked with the key the image was opened with,
   * unless the options name another; the header and key material are
   * written in place and flushed.
   */
  async amendKeys(o: LuksAmendOptions, force: boolean, secret: (id: string) => Promise<Uint8Array>): Promise<void> {
    this.checkWritable();
    const key = this.key;
    await amendLuksKeys(this.header, {
      read: (offset, length) => this.file.read(offset, length),
      write: (offset, data) => this.file.write(offset, data),
      secret,
      openedWith: async () => {
        if (key === undefined) throw invalid("Parameter 'key-secret' is required for cipher");
        return typeof key === 'function' ? key() : key;
      },
    }, o, force);
    await this.file.flush();
  }

  /** QEMU's driver has no discard: the request succeeds and nothing changes. */
  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    checkRequest('discard', offset, length, this.virtualSize);
  }

  flush(): Promise<void> {
    return this.file.flush();
  }

  /** Without a block status of its own, all of it is allocated data (bdrv_co_block_status's default for such a format). */
  async blockStatus(offset: number, length: number): Promise<Extent> {
    checkRequest('block status', offset, length, this.virtualSize);
    return { offset, length, data: true, zero: false, allocated: true, depth: 0, filename: this.filename };
  }

  actualSize(): Promise<number> {
    return this.file.allocatedBytes();
  }

  info(): ImageInfo {
    return { format: 'luks', filename: this.filename, virtualSize: this.virtualSize, encrypted: true, formatSpecific: { type: 'luks', luks: luksInfo(this.header) } };
  }

  /** block_crypto_co_truncate: the file resized to the payload offset plus the new size; what it adds is not encrypted (it reads as noise), as in QEMU. */
  async resize(newSize: number, opts: ResizeOptions = {}): Promise<void> {
    checkResizeRequest(newSize, this.readOnly);
    if (this.payloadOffset > Number.MAX_SAFE_INTEGER - newSize) throw new BlockError('INVALID_ARGUMENT', 'The requested file size is too large', { errno: 'EFBIG' });
    const release = await this.ranges.acquire(0, Number.MAX_SAFE_INTEGER);
    try {
      await resizeFile(this.file, this.payloadOffset + newSize, opts.preallocation ?? 'off');
      this.virtualSize = inSectors(newSize);
    } finally {
      release();
    }
  }

  backing(): undefined {
    return undefined;
  }

  private checkWritable(): void {
    if (this.file.readOnly) throw new BlockError('READ_ONLY', `Image '${this.filename}' is read-only`, { errno: 'EPERM' });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.ranges.drain();
      await this.file.close();
    })();
    return this.closing;
  }
}
