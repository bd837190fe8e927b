/**
 * The FUSE kernel protocol as a FUSE export speaks it on /dev/fuse
 * (linux/fuse.h, protocol 7.31): one request per read, one reply per
 * write, little-endian structures after a fixed header.
 */

/** The protocol version answered to FUSE_INIT: the kernel speaks the lower of its own and this. */
export const FUSE_MAJOR = 7;
export const FUSE_MINOR = 31;

/** The root node's id: a FUSE export's mountpoint is its one file. */
export const FUSE_ROOT_ID = 1;

export const OP = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  FLUSH: 25,
  INIT: 26,
  INTERRUPT: 36,
  DESTROY: 38,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  LSEEK: 46,
} as const;

/** FUSE_INIT flags blockemu asks for, as libfuse 3 does by default for QEMU's export. */
export const INIT = {
  ASYNC_READ: 1 << 0,
  /** O_TRUNC comes with the open instead of as a separate truncate; the export ignores it, as QEMU's does. */
  ATOMIC_O_TRUNC: 1 << 3,
  /** Writes larger than a page (without it the kernel sends every write page by page). */
  BIG_WRITES: 1 << 5,
  AUTO_INVAL_DATA: 1 << 12,
  ASYNC_DIO: 1 << 15,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
} as const;

/** SETATTR's `valid` bits. */
export const FATTR = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  /**
   * The bits libfuse passes on to the filesystem (do_setattr); the others
   * (FH, LOCKOWNER, KILL_SUIDGID) say how the kernel asked, not what.
   */
  PASSED_ON: 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x80 | 0x100 | 0x400,
} as const;

/** fallocate(2) modes. */
export const FALLOC = {
  KEEP_SIZE: 0x01,
  PUNCH_HOLE: 0x02,
  ZERO_RANGE: 0x10,
} as const;

export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

export const S_IFREG = 0o100000;

/** The largest write the kernel sends (and read it asks for): 256 pages, as libfuse negotiates. */
export const MAX_WRITE = 1 << 20;
export const MAX_PAGES = MAX_WRITE / 4096;
/** A read of /dev/fuse must have room for the largest write and its headers. */
export const READ_BUFFER_SIZE = MAX_WRITE + 4096;

export const IN_HEADER_SIZE = 40;
const OUT_HEADER = 16;

/** A request as read from /dev/fuse: its header and the bytes after it. */
export interface FuseRequest {
  opcode: number;
  unique: bigint;
  nodeid: bigint;
  uid: number;
  gid: number;
  /** The request's own arguments (after the header). */
  body: Buffer;
}

export function parseRequest(msg: Buffer): FuseRequest {
  if (msg.length < IN_HEADER_SIZE) throw new Error(`FUSE request of ${msg.length} bytes is shorter than its header`);
  const len = msg.readUInt32LE(0);
  return {
    opcode: msg.readUInt32LE(4),
    unique: msg.readBigUInt64LE(8),
    nodeid: msg.readBigUInt64LE(16),
    uid: msg.readUInt32LE(24),
    gid: msg.readUInt32LE(28),
    body: msg.subarray(IN_HEADER_SIZE, Math.min(len, msg.length)),
  };
}

/** A reply's header: its length, the negated errno (0 for success) and the request it answers. */
export function replyHeader(unique: bigint, errno: number, bodyLength: number): Buffer {
  const h = Buffer.alloc(OUT_HEADER);
  h.writeUInt32LE(OUT_HEADER + bodyLength, 0);
  h.writeInt32LE(-errno, 4);
  h.writeBigUInt64LE(unique, 8);
  return h;
}

export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
}

export function parseInit(b: Buffer): InitIn {
  return { major: b.readUInt32LE(0), minor: b.readUInt32LE(4), maxReadahead: b.readUInt32LE(8), flags: b.readUInt32LE(12) };
}

/** fuse_init_out (64 bytes). */
export function initOut(o: { maxReadahead: number; flags: number; maxWrite: number; maxPages: number }): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32LE(FUSE_MAJOR, 0);
  b.writeUInt32LE(FUSE_MINOR, 4);
  b.writeUInt32LE(o.maxReadahead, 8);
  b.writeUInt32LE(o.flags, 12);
  b.writeUInt16LE(16, 16); // max_background, libfuse's default
  b.writeUInt16LE(12, 18); // congestion_threshold: three quarters of it
  b.writeUInt32LE(o.maxWrite, 20);
  b.writeUInt32LE(1, 24); // time_gran: nanoseconds
  b.writeUInt16LE(o.maxPages, 28);
  return b;
}

export interface Attr {
  ino: number;
  size: number;
  /** 512-byte blocks allocated. */
  blocks: number;
  /** Seconds since the epoch, for atime, mtime and ctime alike. */
  time: number;
  mode: number;
  uid: number;
  gid: number;
  blksize: number;
}

/** fuse_attr_out: the attributes, valid for `validSeconds`. */
export function attrOut(a: Attr, validSeconds: number): Buffer {
  const b = Buffer.alloc(104);
  b.writeBigUInt64LE(BigInt(validSeconds), 0);
  const at = 16;
  b.writeBigUInt64LE(BigInt(a.ino), at);
  b.writeBigUInt64LE(BigInt(a.size), at + 8);
  b.writeBigUInt64LE(BigInt(a.blocks), at + 16);
  for (let i = 0; i < 3; i++) b.writeBigUInt64LE(BigInt(a.time), at + 24 + 8 * i);
  b.writeUInt32LE(a.mode, at + 60);
  b.writeUInt32LE(1, at + 64); // nlink
  b.writeUInt32LE(a.uid, at + 68);
  b.writeUInt32LE(a.gid, at + 72);
  b.writeUInt32LE(a.blksize, at + 80);
  return b;
}

export interface SetattrIn {
  valid: number;
  size: number;
  mode: number;
  uid: number;
  gid: number;
}

export function parseSetattr(b: Buffer): SetattrIn {
  return { valid: b.readUInt32LE(0) & FATTR.PASSED_ON, size: Number(b.readBigUInt64LE(16)), mode: b.readUInt32LE(68), uid: b.readUInt32LE(76), gid: b.readUInt32LE(80) };
}

/** fuse_open_out: no file handle, no flags (the page cache is used, as for QEMU's export). */
export function openOut(): Buffer {
  return Buffer.alloc(16);
}

export interface IoIn {
  offset: number;
  size: number;
}

/** fuse_read_in and fuse_write_in share their first fields; a write's data follows its 40 bytes. */
export function parseIo(b: Buffer): IoIn {
  return { offset: Number(b.readBigUInt64LE(8)), size: b.readUInt32LE(16) };
}

export const WRITE_IN_SIZE = 40;

export function writeOut(size: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(size, 0);
  return b;
}

export interface FallocateIn {
  offset: number;
  length: number;
  mode: number;
}

export function parseFallocate(b: Buffer): FallocateIn {
  return { offset: Number(b.readBigUInt64LE(8)), length: Number(b.readBigUInt64LE(16)), mode: b.readUInt32LE(24) };
}

export interface LseekIn {
  offset: number;
  whence: number;
}

export function parseLseek(b: Buffer): LseekIn {
  return { offset: Number(b.readBigInt64LE(8)), whence: b.readUInt32LE(16) };
}

export function lseekOut(offset: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(offset), 0);
  return b;
}

/** fuse_statfs_out as libfuse answers when the filesystem has no statfs: 512-byte blocks, names up to 255. */
export function statfsOut(): Buffer {
  const b = Buffer.alloc(80);
  b.writeUInt32LE(512, 40); // bsize
  b.writeUInt32LE(255, 44); // namelen
  return b;
}
