import { BlockError, invalidImage } from '../errors.js';
import { unsupportedFeatures } from './unsupported-features.js';

/** On-disk qcow2 header (docs/interop/qcow2.txt). All integers big-endian. */
export const QCOW2_MAGIC = 0x514649fb;
export const V2_HEADER_LENGTH = 72;
export const V3_HEADER_LENGTH = 104;
/** What QEMU 7.2 writes: 104 bytes + compression_type + 7 bytes padding. */
export const V3_HEADER_LENGTH_WRITTEN = 112;
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
export const MAX_BACKING_FILE_NAME = 1023;
/** QEMU's limits (block/qcow2.h): beyond them an image is refused, so a hostile header cannot make us allocate without bound. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
export const MAX_SNAPSHOTS = 65536;
/** QCOW2_MAX_BITMAP_DIRECTORY_SIZE: 1024 bytes per bitmap entry at most, 65535 bitmaps. */
export const MAX_BITMAP_DIRECTORY_SIZE = 1024 * 65535;

export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
/** Whether the image's L2 entries are extended (a subcluster bitmap beside each). */
export function hasExtendedL2(h: Qcow2Header): boolean {
  return (h.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
}
export const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;
export const AUTOCLEAR_KNOWN = AUTOCLEAR_BITMAPS | AUTOCLEAR_DATA_FILE_RAW;

export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

/** Byte offsets of header fields we rewrite in place. */
export const HDR_OFF_SIZE = 24;
export const HDR_OFF_L1_SIZE = 36;
export const HDR_OFF_L1_TABLE = 40;
export const HDR_OFF_REFTABLE = 48;
export const HDR_OFF_INCOMPAT = 72;
export const HDR_OFF_AUTOCLEAR = 88;

export interface HeaderExtension {
  type: number;
  data: Uint8Array;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Header bytes past the fields we know (up to headerLength), preserved verbatim. */
  unknownHeaderTail: Uint8Array;
  /** Extensions in file order, unknown ones included, end marker excluded. */
  extensions: HeaderExtension[];
  backingFile?: string;
  backingFormat?: string;
  /** The external data file's name (its header extension): written only while the incompatible bit says there is one, as QEMU does. */
  dataFile?: string;
  /** LUKS encryption (crypt method 2): where the LUKS header and key material lie in the file (the crypto extension). */
  cryptoHeader?: { offset: number; length: number };
}

const FEATURE_NAMES: ReadonlyArray<[type: number, bit: number, name: string]> = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

function safe(v: bigint, filename: string, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidImage(filename, `${field} is too large (${v})`);
  return Number(v);
}

const INT64_MAX = (1n << 63n) - 1n;
const INT_MAX = 2 ** 31 - 1;
const SNAPSHOT_HEADER_BYTES = 40;

/** QEMU's qcow2_validate_table: a table's entry count within its limit, its offset aligned and addressable. */
export function validateTable(filename: string, offset: bigint, entries: number, entryLen: number, maxBytes: number, name: string, clusterSize: number): void {
  if (entries > Math.floor(maxBytes / entryLen)) throw invalidImage(filename, `${name} too large`);
  if (INT64_MAX - BigInt(entries * entryLen) < offset || offset % BigInt(clusterSize) !== 0n) {
    throw invalidImage(filename, `${name} offset invalid`);
  }
}

/**
 * qcow2_validate_table on a snapshot's L1 table (l1Size entries at
 * l1Offset), in QEMU's words and errno, or undefined: loading it (goto),
 * expanding its zero clusters (amend) and the inactive-l2 overlap check
 * all refuse so.
 */
export function snapshotL1Problem(l1Offset: number, l1Size: number, clusterSize: number): { message: string; errno: 'EFBIG' | 'EINVAL' } | undefined {
  if (l1Size > MAX_L1_BYTES / 8) return { message: 'Snapshot L1 table too large', errno: 'EFBIG' };
  if (l1Offset % clusterSize !== 0 || Number.MAX_SAFE_INTEGER - l1Size * 8 < l1Offset) return { message: 'Snapshot L1 table offset invalid', errno: 'EINVAL' };
  return undefined;
}

/** Bytes to read before the header can be parsed: cluster 0 is enough (extensions live there). */
export function headerProbeLength(): number {
  return V3_HEADER_LENGTH;
}

/**
 * Parses cluster 0. `fileSize` lets offsets be checked against the file.
 * Throws BlockError naming the problem, with the checks in the order and
 * the words of QEMU's qcow2_do_open (bytes past the end of the file read as
 * zeros, as QEMU's do); blockemu's own refusals (features it lacks, tables
 * outside the file) come after QEMU's.
 */
export function parseHeader(buf: Uint8Array, filename: string, fileSize: number): Qcow2Header {
  if (buf.length < V2_HEADER_LENGTH) throw invalidImage(filename, 'Image is not in qcow2 format');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint32(0) !== QCOW2_MAGIC) throw invalidImage(filename, 'Image is not in qcow2 format');
  const version = view.getUint32(4);
  if (version < 2 || version > 3) {
    throw new BlockError('UNSUPPORTED', `Could not open '${filename}': Unsupported qcow2 version ${version}`);
  }
  const clusterBits = view.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw invalidImage(filename, `Unsupported cluster size: 2^${clusterBits}`);
  }
  const clusterSize = 2 ** clusterBits;
  let cluster0 = buf;
  if (buf.length < clusterSize) {
    cluster0 = new Uint8Array(clusterSize);
    cluster0.set(buf);
  }
  const c0 = new DataView(cluster0.buffer, cluster0.byteOffset, cluster0.byteLength);
  const backingFileOffset = view.getBigUint64(8);
  const size = view.getBigUint64(24);
  const l1TableOffset = view.getBigUint64(40);
  const refcountTableOffset = view.getBigUint64(48);
  const snapshotsOffset = view.getBigUint64(64);
  const h: Qcow2Header = {
    version: version as 2 | 3,
    backingFileOffset: 0,
    backingFileSize: view.getUint32(16),
    clusterBits,
    size: 0,
    cryptMethod: view.getUint32(32),
    l1Size: view.getUint32(36),
    l1TableOffset: 0,
    refcountTableOffset: 0,
    refcountTableClusters: view.getUint32(56),
    nbSnapshots: view.getUint32(60),
    snapshotsOffset: 0,
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: 0,
    unknownHeaderTail: new Uint8Array(0),
    extensions: [],
  };
  if (version === 3) {
    h.incompatibleFeatures = c0.getBigUint64(72);
    h.compatibleFeatures = c0.getBigUint64(80);
    h.autoclearFeatures = c0.getBigUint64(88);
    h.refcountOrder = c0.getUint32(96);
    h.headerLength = c0.getUint32(100);
    if (h.headerLength < V3_HEADER_LENGTH) throw invalidImage(filename, 'qcow2 header too short');
  }
  if (h.headerLength > clusterSize) throw invalidImage(filename, 'qcow2 header exceeds cluster size');
  if (h.headerLength > V3_HEADER_LENGTH) {
    h.compressionType = cluster0[104]!;
    h.unknownHeaderTail = cluster0.slice(105, h.headerLength);
  }
  if (backingFileOffset > BigInt(clusterSize)) throw invalidImage(filename, 'Invalid backing file offset');
  h.backingFileOffset = Number(backingFileOffset);
  // Extensions run from the header's end to the backing file name, or to the end of cluster 0.
  const extEnd = h.backingFileOffset !== 0 ? h.backingFileOffset : clusterSize;

  // QEMU's validate_compression_type: the feature bit is set exactly when the type is not zlib.
  if (h.compressionType > 1) throw new BlockError('UNSUPPORTED', `Could not open '${filename}': qcow2: unknown compression type: ${h.compressionType}`);
  if (h.compressionType === 0 && (h.incompatibleFeatures & INCOMPAT_COMPRESSION) !== 0n) {
    throw invalidImage(filename, 'qcow2: Compression type incompatible feature bit must not be set');
  }
  if (h.compressionType !== 0 && (h.incompatibleFeatures & INCOMPAT_COMPRESSION) === 0n) {
    throw invalidImage(filename, 'qcow2: Compression type incompatible feature bit must be set');
  }
  const unknown = h.incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) throw unsupportedFeatures(filename, featureTableOf(h, cluster0, extEnd), unknown);
  if (h.refcountOrder > 6) {
    throw invalidImage(filename, 'Reference count entry width too large; may not exceed 64 bits');
  }
  if (h.cryptMethod > 2) throw invalidImage(filename, `Unsupported encryption method: ${h.cryptMethod}`);

  if (h.refcountTableClusters === 0) throw invalidImage(filename, 'Image does not contain a reference count table');
  validateTable(filename, refcountTableOffset, h.refcountTableClusters, clusterSize, MAX_REFTABLE_BYTES, 'Reference count table', clusterSize);
  validateTable(filename, snapshotsOffset, h.nbSnapshots, SNAPSHOT_HEADER_BYTES, SNAPSHOT_HEADER_BYTES * MAX_SNAPSHOTS, 'Snapshot table', clusterSize);
  validateTable(filename, l1TableOffset, h.l1Size, 8, MAX_L1_BYTES, 'Active L1 table', clusterSize);
  const l1Covers = BigInt(clusterSize) * BigInt(clusterSize / 8);
  const l1Needed = (size + l1Covers - 1n) / l1Covers;
  if (l1Needed > BigInt(INT_MAX)) throw invalidImage(filename, 'Image is too big');
  if (BigInt(h.l1Size) < l1Needed) throw invalidImage(filename, 'L1 table is too small');

  readExtensions(h, cluster0, extEnd, filename);

  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize > Math.min(MAX_BACKING_FILE_NAME, clusterSize - h.backingFileOffset)) {
      throw invalidImage(filename, 'Backing file name too long');
    }
    // QEMU reads the name as a C string: it ends at the first NUL, and an empty name means no backing file.
    const name = cluster0.subarray(h.backingFileOffset, h.backingFileOffset + h.backingFileSize);
    const nul = name.indexOf(0);
    const text = new TextDecoder().decode(nul < 0 ? name : name.subarray(0, nul));
    if (text !== '') h.backingFile = text;
  }

  // What blockemu cannot handle, or refuses rather than reading tables from past the end of the file.
  // qcow2_do_open: 32 subclusters of at least 512 bytes each.
  if (h.incompatibleFeatures & INCOMPAT_EXTL2 && h.clusterBits < 14) {
    throw invalidImage(filename, `Unsupported subcluster size: ${2 ** h.clusterBits / 32}`);
  }
  h.size = safe(size, filename, 'virtual size');
  h.refcountTableOffset = safe(refcountTableOffset, filename, 'reference count table offset');
  h.l1TableOffset = safe(l1TableOffset, filename, 'L1 table offset');
  h.snapshotsOffset = safe(snapshotsOffset, filename, 'snapshot table offset');
  if (h.refcountTableOffset === 0 || h.refcountTableOffset >= fileSize) {
    throw invalidImage(filename, 'Invalid reference count table offset');
  }
  if (h.l1Size > 0 && (h.l1TableOffset === 0 || h.l1TableOffset + h.l1Size * 8 > fileSize)) {
    throw invalidImage(filename, 'Invalid L1 table offset');
  }
  return h;
}

const KNOWN_EXTENSIONS = new Set([EXT_BACKING_FORMAT, EXT_FEATURE_TABLE, EXT_CRYPTO, EXT_BITMAPS, EXT_DATA_FILE]);

/** QEMU's qcow2_read_extensions: from the header's end up to `extEnd`, each extension checked as it is read. */
function readExtensions(h: Qcow2Header, cluster0: Uint8Array, extEnd: number, filename: string): void {
  const view = new DataView(cluster0.buffer, cluster0.byteOffset, cluster0.byteLength);
  let off = h.headerLength;
  while (off < extEnd) {
    // The length is checked before the type, so even an end marker may be "too large".
    if (off + 8 > extEnd) throw invalidImage(filename, 'Header extension too large');
    const type = view.getUint32(off);
    const len = view.getUint32(off + 4);
    off += 8;
    if (len > extEnd - off) throw invalidImage(filename, 'Header extension too large');
    if (type === EXT_END) break;
    const data = cluster0.slice(off, off + len);
    checkExtension(h, type, data, filename);
    // A known extension read twice (qcow2.py add-header-ext makes such images): the later one wins, as each overwrites
    // QEMU's state; unknown ones are all kept, as its unknown_header_ext list keeps them.
    if (KNOWN_EXTENSIONS.has(type)) h.extensions = h.extensions.filter((e) => e.type !== type);
    h.extensions.push({ type, data });
    if (type === EXT_BACKING_FORMAT) h.backingFormat = new TextDecoder().decode(data);
    if (type === EXT_DATA_FILE) h.dataFile = new TextDecoder().decode(data);
    if (type === EXT_CRYPTO && data.length >= 16) {
      const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
      h.cryptoHeader = { offset: safe(v.getBigUint64(0), filename, 'crypto header offset'), length: safe(v.getBigUint64(8), filename, 'crypto header length') };
    }
    off += Math.ceil(len / 8) * 8;
  }
}

/** The feature name table an image with unknown incompatible bits carries, read as QEMU does for its refusal: the walk stops at the first malformed extension. */
function featureTableOf(h: Qcow2Header, cluster0: Uint8Array, extEnd: number): Uint8Array | undefined {
  const view = new DataView(cluster0.buffer, cluster0.byteOffset, cluster0.byteLength);
  let table: Uint8Array | undefined;
  for (let off = h.headerLength; off + 8 <= extEnd; ) {
    const type = view.getUint32(off);
    const len = view.getUint32(off + 4);
    off += 8;
    if (len > extEnd - off || type === EXT_END) break;
    if (type === EXT_BACKING_FORMAT && len >= 16) break;
    if (type === EXT_CRYPTO && h.cryptMethod !== 2) break;
    if (type === EXT_FEATURE_TABLE) table = cluster0.subarray(off, off + len);
    off += Math.ceil(len / 8) * 8;
  }
  return table;
}

/** QEMU's qcow2_read_extensions checks on the extensions it knows, with its messages. */
function checkExtension(h: Qcow2Header, type: number, data: Uint8Array, filename: string): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (type) {
    case EXT_BACKING_FORMAT:
      if (data.length >= 16) throw invalidImage(filename, `ERROR: ext_backing_format: len=${data.length} too large (>=16)`);
      return;
    case EXT_CRYPTO:
      if (h.cryptMethod !== 2) throw invalidImage(filename, 'CRYPTO header extension only expected with LUKS encryption method');
      return;
    case EXT_BITMAPS: {
      if (data.length !== 24) throw invalidImage(filename, 'bitmaps_ext: Invalid extension length');
      // Without the autoclear bit the bitmaps are stale and ignored, whatever the fields say.
      if ((h.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) return;
      const count = view.getUint32(0);
      if (view.getUint32(4) !== 0) throw invalidImage(filename, 'bitmaps_ext: Reserved field is not zero');
      if (count > 65535) throw invalidImage(filename, `bitmaps_ext: Image has ${count} bitmaps, exceeding the QEMU supported maximum of 65535`);
      if (count === 0) throw invalidImage(filename, 'found bitmaps extension with zero bitmaps');
      if (view.getBigUint64(16) % BigInt(2 ** h.clusterBits) !== 0n) throw invalidImage(filename, 'bitmaps_ext: invalid bitmap directory offset');
      const dirSize = view.getBigUint64(8);
      if (dirSize > BigInt(MAX_BITMAP_DIRECTORY_SIZE)) {
        throw invalidImage(filename, `bitmaps_ext: bitmap directory size (${dirSize}) exceeds the maximum supported size (${MAX_BITMAP_DIRECTORY_SIZE})`);
      }
      return;
    }
  }
}

function featureTable(): Uint8Array {
  const t = new Uint8Array(FEATURE_NAMES.length * 48);
  FEATURE_NAMES.forEach(([type, bit, name], i) => {
    t[i * 48] = type;
    t[i * 48 + 1] = bit;
    t.set(new TextEncoder().encode(name), i * 48 + 2);
  });
  return t;
}

/** Whether the image keeps its guest data in an external data file (the incompatible bit; the name may be absent). */
export function hasDataFile(h: Qcow2Header): boolean {
  return (h.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
}

/** Whether the external data file is also a valid raw image of the guest data (the autoclear bit data-file-raw). */
export function dataFileIsRaw(h: Qcow2Header): boolean {
  return (h.autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
}

/** Where qcow2_update_header puts the extensions it regenerates; the rest (unknown ones) follow in file order. */
const EXTENSION_ORDER = [EXT_BACKING_FORMAT, EXT_DATA_FILE, EXT_CRYPTO, EXT_FEATURE_TABLE, EXT_BITMAPS];

/**
 * Serialises a header with its extensions and backing file name into one
 * buffer for cluster 0. Backing format, data file name and feature table
 * are regenerated from the fields; the others are kept as they were; all
 * in QEMU's order (backing format, data file, crypto, feature table,
 * bitmaps, unknown ones).
 */
/** The crypto header extension: the LUKS area's offset and length, two big-endian u64s. */
function cryptoExtension(at: { offset: number; length: number }): Uint8Array {
  const data = new Uint8Array(16);
  const v = new DataView(data.buffer);
  v.setBigUint64(0, BigInt(at.offset));
  v.setBigUint64(8, BigInt(at.length));
  return data;
}

export function serializeHeader(h: Qcow2Header, clusterSize: number): Uint8Array {
  const exts: HeaderExtension[] = [];
  const enc = (text: string) => new TextEncoder().encode(text);
  const table = { type: EXT_FEATURE_TABLE, data: featureTable() };
  const regenerated = new Map<number, HeaderExtension | undefined>([
    [EXT_BACKING_FORMAT, h.backingFormat ? { type: EXT_BACKING_FORMAT, data: enc(h.backingFormat) } : undefined],
    [EXT_DATA_FILE, hasDataFile(h) && h.dataFile ? { type: EXT_DATA_FILE, data: enc(h.dataFile) } : undefined],
    [EXT_FEATURE_TABLE, h.version === 3 ? table : undefined],
    [EXT_CRYPTO, h.cryptMethod === 2 && h.cryptoHeader ? { type: EXT_CRYPTO, data: cryptoExtension(h.cryptoHeader) } : h.extensions.find((x) => x.type === EXT_CRYPTO)],
  ]);
  for (const type of EXTENSION_ORDER) {
    const e = regenerated.has(type) ? regenerated.get(type) : h.extensions.find((x) => x.type === type);
    if (e) exts.push(e);
  }
  for (const e of h.extensions) if (!EXTENSION_ORDER.includes(e.type)) exts.push(e);

  const headerLength = h.version === 2 ? V2_HEADER_LENGTH : Math.max(h.headerLength, V3_HEADER_LENGTH_WRITTEN);
  const name = h.backingFile ? new TextEncoder().encode(h.backingFile) : new Uint8Array(0);
  if (name.length > MAX_BACKING_FILE_NAME) throw new BlockError('INVALID_ARGUMENT', 'Backing file name too long');
  const sizeWith = (list: HeaderExtension[]) => headerLength + 8 + name.length + list.reduce((n, e) => n + 8 + Math.ceil(e.data.length / 8) * 8, 0);
  // The feature name table is optional: QEMU leaves it out when cluster 0 is too small for it.
  if (sizeWith(exts) > clusterSize && exts.includes(table)) exts.splice(exts.indexOf(table), 1);
  const total = sizeWith(exts);
  if (total > clusterSize) throw new BlockError('INVALID_ARGUMENT', 'qcow2 header and extensions do not fit in one cluster');
  const extBytes = total - headerLength - name.length;

  const buf = new Uint8Array(total);
  const view = new DataView(buf.buffer);
  view.setUint32(0, QCOW2_MAGIC);
  view.setUint32(4, h.version);
  view.setBigUint64(8, BigInt(name.length ? headerLength + extBytes : 0));
  view.setUint32(16, name.length);
  view.setUint32(20, h.clusterBits);
  view.setBigUint64(24, BigInt(h.size));
  view.setUint32(32, h.cryptMethod);
  view.setUint32(36, h.l1Size);
  view.setBigUint64(40, BigInt(h.l1TableOffset));
  view.setBigUint64(48, BigInt(h.refcountTableOffset));
  view.setUint32(56, h.refcountTableClusters);
  view.setUint32(60, h.nbSnapshots);
  view.setBigUint64(64, BigInt(h.snapshotsOffset));
  if (h.version === 3) {
    view.setBigUint64(72, h.incompatibleFeatures);
    view.setBigUint64(80, h.compatibleFeatures);
    view.setBigUint64(88, h.autoclearFeatures);
    view.setUint32(96, h.refcountOrder);
    view.setUint32(100, headerLength);
    buf[104] = h.compressionType;
    buf.set(h.unknownHeaderTail.subarray(0, headerLength - 105), 105);
  }
  let off = headerLength;
  for (const e of exts) {
    view.setUint32(off, e.type);
    view.setUint32(off + 4, e.data.length);
    buf.set(e.data, off + 8);
    off += 8 + Math.ceil(e.data.length / 8) * 8;
  }
  off += 8; // end marker, already zero
  buf.set(name, off);
  return buf;
}
