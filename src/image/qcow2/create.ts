import { dirname, isAbsolute, resolve } from 'node:path';
import { BlockError } from '../errors.js';
import type { ByteFile } from '../byte-file.js';
import type { CreateOptions } from '../create.js';
import { openNewFile } from '../file-create.js';
import { HostFile } from '../file.js';
import { resizeFile } from '../resize.js';
import { hasProtocolPrefix } from '../path-protocol.js';
import type { BlockImage, ImageFormat } from '../types.js';
import { COMPRESSION_ZSTD } from './compress.js';
import { AUTOCLEAR_DATA_FILE_RAW, COMPAT_LAZY_REFCOUNTS, INCOMPAT_COMPRESSION, INCOMPAT_DATA_FILE, INCOMPAT_EXTL2, MAX_CLUSTER_BITS, MAX_L1_BYTES, MIN_CLUSTER_BITS, type Qcow2Header, serializeHeader } from './header.js';
import { Qcow2Layout } from './layout.js';

const SECTOR = 512;

/**
 * Writes a new, empty qcow2 image file at `path` (qemu-img create): the
 * size and backing format default to the backing file's.
 */
export async function createQcow2(
  path: string,
  opts: CreateOptions,
  openBacking: (path: string, format: ImageFormat | undefined) => Promise<BlockImage>,
): Promise<void> {
  let size = opts.size;
  let backingFormat = opts.backingFormat;
  // A protocol or json: name is for the block layer, and a driver other than raw or qcow2 (`file`) one this layer does
  // not open: such a backing file is only recorded, when nothing need be read from it.
  const openable = backingFormat === undefined || backingFormat === 'raw' || backingFormat === 'qcow2';
  const protocol = opts.backingFile !== undefined && hasProtocolPrefix(opts.backingFile);
  const recordOnly = (protocol || !openable || opts.recordBackingOnly === true) && size !== undefined && backingFormat !== undefined;
  if (opts.backingFile !== undefined && !recordOnly) {
    const full = isAbsolute(opts.backingFile) || protocol ? opts.backingFile : resolve(dirname(path), opts.backingFile);
    if (backingFormat !== undefined && backingFormat !== 'raw' && backingFormat !== 'qcow2') {
      throw new BlockError('UNSUPPORTED', `Could not open backing file '${full}': Unknown driver '${backingFormat}'`);
    }
    const backing = await openBacking(full, backingFormat);
    try {
      size ??= backing.size();
      backingFormat ??= backing.format;
    } finally {
      await backing.close();
    }
  }
  if (size === undefined) throw new BlockError('INVALID_ARGUMENT', 'Image creation needs a size parameter');
  const file = await openNewFile(path);
  try {
    // qcow2_co_create_opts creates the data file (empty) right after the image file, before the driver's checks.
    if (opts.dataFile !== undefined) await (await openNewFile(opts.dataFile)).close();
    const header = planQcow2({ ...opts, size, backingFormat });
    await writeQcow2(file, header);
  } finally {
    await file.close();
  }
  // The image's truncate to its size reaches the data file (qcow2_co_truncate, PREALLOC_MODE_OFF).
  if (opts.dataFile !== undefined && size > 0) {
    const data = await HostFile.open(opts.dataFile);
    try {
      await resizeFile(data, size);
    } finally {
      await data.close();
    }
  }
}

/** qcow2_co_create's checks on the data file options, in its order and words. */
function checkDataFileOptions(opts: Omit<CreateOptions, 'size'>, version: number): void {
  if (opts.dataFileRaw && opts.dataFile === undefined) throw new BlockError('INVALID_ARGUMENT', 'data-file-raw requires data-file');
  if (opts.dataFileRaw && opts.backingFile !== undefined) throw new BlockError('INVALID_ARGUMENT', 'Backing file and data-file-raw cannot be used at the same time');
  if (opts.dataFile !== undefined && version < 3) {
    throw new BlockError('INVALID_ARGUMENT', 'External data files are only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
}

/**
 * Formats `file` (a host file or a block node's bytes, as blockdev-create
 * does with its `file` node) as a new, empty qcow2 image; nothing is
 * opened for the backing file, whose name is only recorded.
 */
export async function formatQcow2(file: ByteFile, opts: Omit<CreateOptions, 'size'> & { size: number | bigint }): Promise<void> {
  await writeQcow2(file, planQcow2(opts));
}

interface PlannedImage {
  headerBytes: Uint8Array;
  clusterSize: number;
  tableOffset: number;
  table: Uint8Array;
  blocksOffset: number;
  refBlocks: Uint8Array;
  l1Offset: number;
  l1Size: number;
}

/**
 * The image laid out as QEMU 7.2 lays it out: header in cluster 0, refcount
 * table, refcount block(s), then the L1 table, the file ending right after
 * the L1 table's last entry.
 */
function planQcow2(opts: Omit<CreateOptions, 'size'> & { size: number | bigint }): PlannedImage {
  const clusterSize = opts.clusterSize ?? 65536;
  const clusterBits = Math.log2(clusterSize);
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new BlockError('INVALID_ARGUMENT', 'Cluster size must be a power of two between 512 and 2048k');
  }
  const compat = opts.compat ?? '1.1';
  const refcountBits = opts.refcountBits ?? 16;
  const refcountOrder = Math.log2(refcountBits);
  if (!Number.isInteger(refcountOrder) || refcountOrder < 0 || refcountOrder > 6) {
    throw new BlockError('INVALID_ARGUMENT', 'Refcount width must be a power of two and may not exceed 64 bits');
  }
  if (compat === '0.10' && refcountBits !== 16) {
    throw new BlockError('INVALID_ARGUMENT', 'Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)');
  }
  if (compat === '0.10' && opts.lazyRefcounts) {
    throw new BlockError('INVALID_ARGUMENT', 'Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)');
  }
  checkDataFileOptions(opts, compat === '0.10' ? 2 : 3);
  const backingFormat = opts.backingFormat;
  // Exact to the last bit: with large clusters a valid size passes 2^53 (QEMU's limit is the L1 table's, below).
  const exactSize = BigInt(opts.size);
  if (exactSize < 0n || exactSize >= 1n << 63n) throw new BlockError('INVALID_ARGUMENT', `Invalid image size ${exactSize}`);
  const sector = BigInt(SECTOR);
  const size = ((exactSize + sector - 1n) / sector) * sector;

  if (opts.extendedL2 && compat === '0.10') {
    throw new BlockError('INVALID_ARGUMENT', 'Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
  if (opts.extendedL2 && clusterSize < 16384) throw new BlockError('INVALID_ARGUMENT', 'Extended L2 entries are only supported with cluster sizes of at least 16384 bytes');
  const zstd = opts.compressionType === 'zstd';
  if (zstd && compat === '0.10') {
    throw new BlockError('INVALID_ARGUMENT', 'Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
  const layout = new Qcow2Layout(clusterBits, refcountOrder, opts.extendedL2 === true);
  const l2Coverage = BigInt(layout.l2Coverage);
  const l1Size = Number((size + l2Coverage - 1n) / l2Coverage);
  if (l1Size * 8 > MAX_L1_BYTES) throw new BlockError('INVALID_ARGUMENT', 'Image size is too big for this cluster size');
  // An empty image has no L1 table at all (QEMU allocates it when the image first grows).
  const l1Clusters = l1Size === 0 ? 0 : Math.ceil((l1Size * 8) / clusterSize);

  // Refcount blocks must count themselves: iterate to the fixed point.
  let blocks = 1;
  let tableClusters = 1;
  for (;;) {
    const total = 1 + tableClusters + blocks + l1Clusters;
    const b = Math.ceil(total / layout.refblockEntries);
    const t = Math.ceil((b * 8) / clusterSize);
    if (b === blocks && t === tableClusters) break;
    blocks = b;
    tableClusters = t;
  }
  const tableOffset = clusterSize;
  const blocksOffset = tableOffset + tableClusters * clusterSize;
  const l1Offset = l1Size === 0 ? 0 : blocksOffset + blocks * clusterSize;
  const used = 1 + tableClusters + blocks + l1Clusters;

  const header: Qcow2Header = {
    version: compat === '0.10' ? 2 : 3,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits,
    size: Number(size),
    cryptMethod: 0,
    l1Size,
    l1TableOffset: l1Offset,
    refcountTableOffset: tableOffset,
    refcountTableClusters: tableClusters,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatibleFeatures:
      (opts.dataFile !== undefined ? INCOMPAT_DATA_FILE : 0n) | (zstd ? INCOMPAT_COMPRESSION : 0n) | (opts.extendedL2 ? INCOMPAT_EXTL2 : 0n),
    compatibleFeatures: opts.lazyRefcounts ? COMPAT_LAZY_REFCOUNTS : 0n,
    autoclearFeatures: opts.dataFileRaw ? AUTOCLEAR_DATA_FILE_RAW : 0n,
    refcountOrder,
    headerLength: 112,
    compressionType: zstd ? COMPRESSION_ZSTD : 0,
    unknownHeaderTail: new Uint8Array(7),
    extensions: [],
    backingFile: opts.backingFile,
    backingFormat: opts.backingFile !== undefined ? backingFormat : undefined,
    dataFile: opts.dataFile,
  };
  const headerBytes = serializeHeader(header, clusterSize);
  // The header's size field holds the exact value (past 2^53 the number above is rounded).
  new DataView(headerBytes.buffer, headerBytes.byteOffset, headerBytes.byteLength).setBigUint64(24, size);

  const table = new Uint8Array(tableClusters * clusterSize);
  const tview = new DataView(table.buffer);
  for (let b = 0; b < blocks; b++) tview.setBigUint64(b * 8, BigInt(blocksOffset + b * clusterSize));
  const refBlocks = new Uint8Array(blocks * clusterSize);
  setRefcountsToOne(refBlocks, used, layout.refcountBits);

  return { headerBytes, clusterSize, tableOffset, table, blocksOffset, refBlocks, l1Offset, l1Size };
}

/**
 * Writes the new image over the start of `file` as qcow2_co_create does:
 * the whole header cluster (zeroes after the header, so cluster 0 is
 * allocated on disk as QEMU's is), the refcount table and blocks, the L1
 * table. Nothing is truncated: a file that was longer keeps its tail (a
 * created host file is empty already).
 */
async function writeQcow2(file: ByteFile, p: PlannedImage): Promise<void> {
  // Written whole (zeroes after the header), even when the header runs past a cluster.
  const headerCluster = new Uint8Array(Math.max(p.clusterSize, p.headerBytes.length));
  headerCluster.set(p.headerBytes);
  await file.write(0, headerCluster);
  await file.write(p.tableOffset, p.table);
  await file.write(p.blocksOffset, p.refBlocks);
  if (p.l1Size > 0) await file.write(p.l1Offset, new Uint8Array(p.l1Size * 8));
  await file.flush();
}

/** Sets the first n entries of consecutive refcount blocks to 1 (big-endian; sub-byte widths LSB first). */
function setRefcountsToOne(buf: Uint8Array, n: number, bits: number): void {
  for (let i = 0; i < n; i++) {
    if (bits >= 8) {
      const bytes = bits / 8;
      buf[i * bytes + bytes - 1] = 1;
    } else {
      const bit = i * bits;
      buf[bit >> 3]! |= 1 << (bit & 7);
    }
  }
}
