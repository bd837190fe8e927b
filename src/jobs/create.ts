import { BlockBackend } from '../blockdev/block-backend.js';
import type { CreateEncryption } from '../image/crypto/create.js';
import { setUpEncryption } from '../image/qcow2/crypto/setup.js';
import { PERM_ALL, PERM_RESIZE, PERM_WRITE } from '../image/perm.js';
import type { BlockNode } from '../blockdev/node.js';
import { NodeByteFile } from '../blockdev/node-file.js';
import { strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import { createHostFile } from '../image/file-create.js';
import { formatQcow2 } from '../image/qcow2/create.js';
import { Qcow2Image } from '../image/qcow2/image.js';
import { LuksImage } from '../image/luks/image.js';
import type { Clock } from '../blockdev/clock.js';
import { Job, type JobListener } from './job.js';

const invalid = (message: string) => new BlockError('INVALID_ARGUMENT', message);
const unsupported = (what: string) => new BlockError('UNSUPPORTED', `${what} is not supported by blockemu`);

type Prealloc = 'off' | 'metadata' | 'falloc' | 'full';

/** blockdev-create driver=file: a host file of `size` bytes. */
export interface FileCreateSpec {
  driver: 'file';
  filename: string;
  /** A uint64 from QMP, exact. */
  size: bigint;
  preallocation?: Prealloc;
  extentSizeHint?: bigint;
}

/** blockdev-create driver=qcow2: formats the bytes of an existing node (found when the job runs, as QEMU does). */
export interface Qcow2CreateSpec {
  driver: 'qcow2';
  file: () => Promise<BlockNode>;
  /** A uint64 from QMP, exact: QEMU's checks look at every bit (a multiple of 512, negative as int64). */
  size: bigint;
  version?: 'v2' | 'v3';
  clusterSize?: bigint;
  extendedL2?: boolean;
  preallocation?: Prealloc;
  backingFile?: string;
  backingFormat?: string;
  lazyRefcounts?: boolean;
  refcountBits?: bigint;
  compressionType?: 'zlib' | 'zstd';
  /** data-file: the node guest data goes to (found when the job runs). */
  dataFile?: () => Promise<BlockNode>;
  dataFileRaw?: boolean;
  /** Members blockemu does not implement, refused when the job runs. */
  unsupported?: string[];
  /** encrypt: the image is encrypted as its last creation step. */
  encryption?: CreateEncryption;
}

/** blockdev-create driver=luks: a LUKS header and the payload's room on an existing node (found when the job runs). */
export interface LuksCreateSpec {
  driver: 'luks';
  file: () => Promise<BlockNode>;
  size: bigint;
  preallocation?: Prealloc;
  encryption: CreateEncryption;
}

/** What the job lets go of when it ends (nodes it opened from inline definitions). */
export type CreateSpec = (FileCreateSpec | Qcow2CreateSpec | LuksCreateSpec) & { release?: () => Promise<void> };

/**
 * blockdev-create's job (block/create.c): one unit of progress, the
 * image created when it runs; errors become the job's error, as in QEMU,
 * where they surface only in query-jobs and the concluded job. Manual
 * dismiss, automatic finalize. Not a block job: setting it up does not
 * drain the graph, so neither it nor other jobs report a paused/running
 * pair for it.
 */
export class CreateJob extends Job {
  constructor(
    id: string,
    listener: JobListener,
    readonly spec: CreateSpec,
    clock?: Clock,
  ) {
    super(id, 'create', listener, { autoDismiss: false, clock });
  }

  override get isBlockJob(): boolean {
    return false;
  }

  override internalPause(): void {}

  protected async run(): Promise<void> {
    this.progressTotal = 1;
    try {
      if (this.spec.driver === 'file') await createFile(this.spec);
      else if (this.spec.driver === 'luks') await createLuksOnNode(this.spec);
      else await createQcow2OnNode(this.spec);
    } finally {
      await this.spec.release?.();
      this.progressCurrent = 1;
    }
  }
}

/** file-posix raw_co_create, with its words. nocow and the extent size hint do not apply here (beyond its range check). */
async function createFile(spec: FileCreateSpec): Promise<void> {
  if ((spec.extentSizeHint ?? 0n) > 0xffffffffn) throw invalid('Extent size hint is too large');
  const prealloc = spec.preallocation ?? 'off';
  // QEMU has emptied the file before it finds the mode unsupported.
  await createHostFile(spec.filename, prealloc === 'metadata' ? 0n : spec.size, prealloc === 'metadata' ? 'off' : prealloc);
  if (prealloc === 'metadata') throw invalid('Unsupported preallocation mode: metadata');
}

/**
 * block_crypto_co_create_luks: the node written through a BlockBackend
 * that may write and resize it (block_crypto_co_create_generic), sized to
 * the header and `size` bytes, the header and key material written.
 */
async function createLuksOnNode(spec: LuksCreateSpec): Promise<void> {
  const node = await spec.file();
  const blk = new BlockBackend({ perm: PERM_WRITE | PERM_RESIZE, shared: PERM_ALL });
  await blk.insert(node);
  try {
    if (spec.size > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('The requested file size is too large');
    await LuksImage.format(new NodeByteFile(node, node.nodeName), Number(spec.size), spec.encryption, spec.preallocation ?? 'off');
  } finally {
    await blk.remove();
  }
}

/** BDRV_MAX_LENGTH: the largest offset the block layer takes (INT64_MAX aligned down to 1 GiB). */
const BDRV_MAX_LENGTH = (1n << 63n) - (1n << 30n);
/** QCOW_MAX_L1_SIZE: the L1 table QEMU grows to at most, in bytes. */
const QCOW_MAX_L1_SIZE = 32n << 20n;

/**
 * Why QEMU's blk_truncate to `size` fails on a fresh qcow2 image (the
 * "Could not resize image: " part of qcow2_co_create), or undefined:
 * bdrv_co_truncate takes the size as an int64 and checks it against
 * BDRV_MAX_LENGTH, then qcow2_co_truncate must grow the L1 table to cover it.
 */
function truncateError(size: bigint, clusterSize: number, extendedL2: boolean): string | undefined {
  const offset = size >= 1n << 63n ? size - (1n << 64n) : size;
  if (offset < 0n) return 'Image size cannot be negative';
  if (offset > BDRV_MAX_LENGTH) return `offset(${offset}) exceeds maximum(${BDRV_MAX_LENGTH})`;
  const cs = BigInt(clusterSize);
  const l2Coverage = cs * (cs / (extendedL2 ? 16n : 8n));
  if (((offset + l2Coverage - 1n) / l2Coverage) * 8n > QCOW_MAX_L1_SIZE) return `Failed to grow the L1 table: ${strerror('EFBIG')}`;
  return undefined;
}

/** qcow2_co_create's checks in QEMU's order and words, then the image written into the node's bytes. */
async function createQcow2OnNode(spec: Qcow2CreateSpec): Promise<void> {
  const node = await spec.file();
  if (spec.size % 512n !== 0n) throw invalid('Image size must be a multiple of 512 bytes');
  const version = spec.version === 'v2' ? 2 : 3;
  const clusterSizeArg = spec.clusterSize ?? 65536n;
  if (spec.extendedL2 && version < 3) throw invalid('Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  if (!isPowerOf2(clusterSizeArg) || clusterSizeArg < 512n || clusterSizeArg > 2n * 1024n * 1024n) {
    throw invalid('Cluster size must be a power of two between 512 and 2048k');
  }
  if (spec.extendedL2 && clusterSizeArg < 16384n) throw invalid('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes');
  const prealloc = spec.preallocation ?? 'off';
  if (spec.backingFile !== undefined && prealloc !== 'off' && !spec.extendedL2) throw invalid('Backing file and preallocation can only be used at the same time if extended_l2 is on');
  if (spec.backingFormat !== undefined && spec.backingFile === undefined) throw invalid('Backing format cannot be used without backing file');
  if (version < 3 && spec.lazyRefcounts) throw invalid('Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  const clusterSize = Number(clusterSizeArg);
  const refcountBitsArg = spec.refcountBits ?? 16n;
  // An int64 that QEMU tests as a uint64 (is_power_of_2): -2^63 passes as 2^63.
  if (refcountBitsArg > 64n || !isPowerOf2(BigInt.asUintN(64, refcountBitsArg))) throw invalid('Refcount width must be a power of two and may not exceed 64 bits');
  if (version < 3 && refcountBitsArg !== 16n) {
    throw invalid('Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)');
  }
  // qcow2_co_create's data file checks; data-file-raw needs the tables to map every cluster: metadata preallocated at least.
  if (spec.dataFileRaw && spec.dataFile === undefined) throw invalid('data-file-raw requires data-file');
  if (spec.dataFileRaw && spec.backingFile !== undefined) throw invalid('Backing file and data-file-raw cannot be used at the same time');
  if (spec.dataFile !== undefined && version < 3) {
    throw invalid('External data files are only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  }
  const dataNode = spec.dataFile && (await spec.dataFile());
  if (spec.compressionType === 'zstd' && version < 3) throw invalid('Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  // What QEMU can do and blockemu cannot yet: refused clearly instead of writing an image that lacks it.
  for (const member of spec.unsupported ?? []) throw unsupported(`qcow2 option '${member}'`);
  // The order is ctz32 of the width's low 32 bits: for -2^63 that is 32, an image QEMU writes and then cannot open.
  const low = Number(BigInt.asUintN(32, refcountBitsArg));
  const refcountOrder = low === 0 ? 32 : 31 - Math.clz32(low & -low);
  if (refcountOrder > 6) throw invalid('Reference count entry width too large; may not exceed 64 bits');
  const refcountBits = 1 << refcountOrder;
  // QEMU writes through a BlockBackend taking write and resize: a format node using the file, or a read-only node, refuses it.
  const blk = new BlockBackend({ perm: PERM_WRITE | PERM_RESIZE, shared: PERM_ALL });
  await blk.insert(node);
  const dataBlk = new BlockBackend({ perm: PERM_WRITE | PERM_RESIZE, shared: PERM_ALL });
  try {
    if (dataNode) await dataBlk.insert(dataNode);
    const effective = spec.dataFileRaw && prealloc === 'off' ? 'metadata' : prealloc;
    await formatOnNode(node, spec, clusterSize, version, refcountBits, dataNode, effective);
  } finally {
    await dataBlk.remove();
    await blk.remove();
  }
}

async function formatOnNode(node: BlockNode, spec: Qcow2CreateSpec, clusterSize: number, version: number, refcountBits: number, dataNode: BlockNode | undefined, prealloc: Prealloc): Promise<void> {
  // QEMU writes an empty image first and then resizes it: a size it cannot take leaves that empty image behind.
  const resizeFailure = truncateError(spec.size, clusterSize, spec.extendedL2 === true);
  // With a data file or preallocation the image is written empty and then grown through the image, as QEMU's blk_truncate does.
  const throughImage = resizeFailure === undefined && (dataNode !== undefined || prealloc !== 'off');
  const dataName = dataNode && (await dataNode.imageInfo()).filename;
  await formatQcow2(new NodeByteFile(node, node.nodeName), {
    format: 'qcow2',
    size: resizeFailure === undefined && !throughImage ? spec.size : 0,
    ...(dataName !== undefined ? { dataFile: dataName, dataFileRaw: spec.dataFileRaw ?? false } : {}),
    clusterSize,
    compat: version === 2 ? '0.10' : '1.1',
    refcountBits,
    lazyRefcounts: spec.lazyRefcounts ?? false,
    extendedL2: spec.extendedL2 ?? false,
    ...(spec.compressionType === 'zstd' ? { compressionType: 'zstd' as const } : {}),
    // The backing file is recorded after the resize.
    ...(resizeFailure === undefined ? { backingFile: spec.backingFile, backingFormat: spec.backingFormat } : {}),
  });
  if (resizeFailure !== undefined) throw invalid(`Could not resize image: ${resizeFailure}`);
  if (throughImage) await growThroughImage(node, spec, dataNode, dataName, prealloc);
  if (spec.encryption) {
    // qcow2_set_up_encryption, after the size and the backing file: the image opened again, without a key.
    const image = await Qcow2Image.openFile(new NodeByteFile(node, node.nodeName), {
      openBacking: false,
      openBackingImage: () => Promise.reject(new BlockError('UNSUPPORTED', 'no backing image is opened while creating')),
      ...(dataNode ? { givenDataFile: async () => new NodeByteFile(dataNode, dataName!) } : {}),
    });
    try {
      await setUpEncryption(image, spec.encryption);
    } finally {
      await image.close();
    }
  }
}

async function growThroughImage(node: BlockNode, spec: Qcow2CreateSpec, dataNode: BlockNode | undefined, dataName: string | undefined, prealloc: Prealloc): Promise<void> {
  const image = await Qcow2Image.openFile(new NodeByteFile(node, node.nodeName), {
    openBacking: false,
    openBackingImage: () => Promise.reject(new BlockError('UNSUPPORTED', 'no backing image is opened while creating')),
    ...(dataNode ? { givenDataFile: async () => new NodeByteFile(dataNode, dataName!) } : {}),
  });
  try {
    await image.resize(Number(spec.size), { preallocation: prealloc });
  } catch (err) {
    throw new BlockError(err instanceof BlockError ? err.code : 'IO', `Could not resize image: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    await image.close();
  }
}

function isPowerOf2(n: bigint): boolean {
  return n > 0n && (n & (n - 1n)) === 0n;
}

