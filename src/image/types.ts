/**
 * The contract every image format meets. Offsets and lengths are byte counts
 * (JavaScript numbers: exact up to 2^53, far beyond any image we accept).
 */
export type ImageFormat = 'raw' | 'qcow2' | 'luks';

/** One run of bytes with the same allocation status, as qemu-img map reports it. */
export interface Extent {
  offset: number;
  length: number;
  /** Reads return data stored somewhere (this image or a backing image). */
  data: boolean;
  /** Reads return zeroes. */
  zero: boolean;
  /** Allocated in this image (not falling through to a backing file). */
  allocated: boolean;
  /** Which image in the backing chain answers the read: 0 = this one. */
  depth: number;
  /** Where the data sits in the file of the image that answers (raw: same as offset; qcow2 normal clusters). */
  hostOffset?: number;
  /** Filename of the image answering (for map --output json). */
  filename?: string;
}

/** What a block status is asked for (QEMU's want_zero). */
export interface StatusOptions {
  /** Default true: find zeroes even where that costs reads. */
  wantZero?: boolean;
}

export interface WriteOptions {
  /** Force unit access: on stable storage when the write completes (the image flushes after it, as QEMU emulates BDRV_REQ_FUA). */
  fua?: boolean;
}

export interface WriteZeroesOptions extends WriteOptions {
  /** The image may deallocate instead of writing zeroes (QEMU's BDRV_REQ_MAY_UNMAP). */
  mayUnmap?: boolean;
}

/** One part of a vectored write (writePieces): bytes, or zeroes that may deallocate when mayUnmap is set. */
export interface WritePiece {
  offset: number;
  length: number;
  data?: Uint8Array;
  mayUnmap?: boolean;
}

/**
 * How a resize reserves the bytes it adds (QEMU's PreallocMode): `off`
 * nothing; `metadata` (qcow2) tables and clusters mapped, data left to the
 * file system; `falloc` and `full` the data too, as zeroes written (Node
 * has no posix_fallocate, so both allocate the blocks by writing them).
 */
export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';
export const PREALLOCATIONS: readonly Preallocation[] = ['off', 'metadata', 'falloc', 'full'];

/** A persistent bitmap the caller holds in memory (QEMU's BdrvDirtyBitmap), as a resize must see it. */
export interface HeldBitmap {
  /** Throws (QEMU's message) when the bitmap may not change size: inconsistent, busy or read-only. */
  check(): void;
}

export interface ResizeOptions {
  /** Default `off`. Only growing can preallocate. */
  preallocation?: Preallocation;
  /**
   * qcow2 with persistent bitmaps: the caller's in-memory copy of the bitmap
   * of this name, undefined when it has none. QEMU only resizes an image
   * whose bitmaps are all held in memory (they are stored again, resized,
   * later); without this option none is, and such an image is refused.
   */
  heldBitmap?: (name: string) => HeldBitmap | undefined;
  /** Non-fatal trouble (QEMU's warn_report), e.g. a shrunk file's tail that could not be cut off. */
  warn?: (message: string) => void;
  /** The caller holds the image's whole range lock already (a snapshot revert resizing the image): the resize takes none. */
  rangesHeld?: boolean;
}

/** qemu-img info's `encrypt` block: QCryptoBlockInfo for qcow's AES or for LUKS. */
export type EncryptInfo =
  | { format: 'aes' }
  | {
      format: 'luks';
      cipherAlg: string;
      cipherMode: string;
      ivgenAlg: string;
      hashAlg: string;
      uuid: string;
      payloadOffset: number;
      masterKeyIters: number;
      slots: { active: boolean; iters?: number; stripes?: number; keyOffset: number }[];
    };

export interface ImageInfo {
  format: ImageFormat;
  filename: string;
  virtualSize: number;
  clusterSize?: number;
  backingFilename?: string;
  backingFormat?: string;
  /** Absolute path used to open the backing file. */
  fullBackingFilename?: string;
  dirtyFlag?: boolean;
  /** The image's data is encrypted (qcow2 with a crypt method). */
  encrypted?: boolean;
  formatSpecific?: Qcow2Specific | LuksSpecific;
}

/** qcow2's ImageInfoSpecificQCow2. */
export interface Qcow2Specific {
  type: 'qcow2';
  compat: '0.10' | '1.1';
  compressionType: 'zlib' | 'zstd';
  lazyRefcounts: boolean;
  refcountBits: number;
  corrupt: boolean;
  extendedL2: boolean;
  /** The external data file's name as the header gives it (absent: none named). */
  dataFile?: string;
  /** Present when the image has an external data file: whether it is kept a raw image too. */
  dataFileRaw?: boolean;
  /** How the image is encrypted (QCryptoBlockInfo): legacy AES, or LUKS with its header's parameters. */
  encrypt?: EncryptInfo;
  /** The persistent bitmaps the image's directory lists now (qcow2_get_bitmap_info_list); absent when none. */
  bitmaps?: { name: string; granularity: number; flags: ('in-use' | 'auto')[] }[];
}

/** The luks format's ImageInfoSpecificLUKSWrapper: its header's QCryptoBlockInfoLUKS. */
export interface LuksSpecific {
  type: 'luks';
  luks: Extract<EncryptInfo, { format: 'luks' }>;
}

export interface BlockImage {
  readonly format: ImageFormat;
  readonly filename: string;
  readonly readOnly: boolean;
  /** Virtual size in bytes. */
  size(): number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Reads into a caller's buffer (no allocation per request); fills all of it. */
  readInto(out: Uint8Array, offset: number): Promise<void>;
  write(offset: number, data: Uint8Array, opts?: WriteOptions): Promise<void>;
  writeZeroes(offset: number, length: number, opts?: WriteZeroesOptions): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
  /** Status of the bytes starting at offset: the returned extent starts at offset and is at most `length` long. */
  /** `opts.wantZero` false: what is allocated is enough (QEMU passes want_zero down the whole chain). */
  blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent>;
  /** Bytes the host file occupies on disk. */
  actualSize(): Promise<number>;
  info(): ImageInfo;
  /**
   * Sets the virtual size to `newSize` bytes (QEMU's bdrv_co_truncate and
   * the format's truncate): growing adds zeroes (or what preallocation
   * says), shrinking drops everything past the new end. Failures are
   * BlockErrors with QEMU's messages. Requests that are in flight must be
   * drained by the caller first (QEMU drains the node); requests issued
   * after it returns see the new size.
   */
  resize(newSize: number, opts?: ResizeOptions): Promise<void>;
  /** The backing image, if any (opened read-only). */
  backing(): BlockImage | undefined;
  /** Flushes and closes this image and its backing chain. Idempotent. */
  close(): Promise<void>;
}
