import { BlockBackend } from '../blockdev/block-backend.js';
import { PERM_ALL, PERM_RESIZE, PERM_WRITE } from '../image/perm.js';
import type { BlockNode } from '../blockdev/node.js';
import { NodeByteFile } from '../blockdev/node-file.js';
import { strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import { createHostFile } from '../image/file-create.js';
import { formatQcow2 } from '../image/qcow2/create.js';
import type { ImageFormat } from '../image/types.js';
import type { Clock } from './clock.js';
import { Job, type JobListener } from './job.js';

const invalid = (message: string) => new BlockError('INVALID_ARGUMENT', message);
const unsupported = (what: string) => new BlockError('UNSUPPORTED', `${what} is not supported by blockemu`);

type Prealloc = 'off' | 'metadata' | 'falloc' | 'full';

/** blockdev-create driver=file: a host file of `size` bytes. */
export interface FileCreateSpec {
  driver: 'file';
  filename: string;
  size: number;
  preallocation?: Prealloc;
}

/** blockdev-create driver=qcow2: formats the bytes of an existing node (found when the job runs, as QEMU does). */
export interface Qcow2CreateSpec {
  driver: 'qcow2';
  file: () => Promise<BlockNode>;
  size: number;
  version?: 'v2' | 'v3';
  clusterSize?: number;
  extendedL2?: boolean;
  preallocation?: Prealloc;
  backingFile?: string;
  backingFormat?: string;
  lazyRefcounts?: boolean;
  refcountBits?: number;
  compressionType?: 'zlib' | 'zstd';
  /** Members blockemu does not implement (data-file, encrypt…), refused when the job runs. */
  unsupported?: string[];
}

export type CreateSpec = FileCreateSpec | Qcow2CreateSpec;

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
      else await createQcow2OnNode(this.spec);
    } finally {
      this.progressCurrent = 1;
    }
  }
}

/** file-posix raw_co_create, with its words. nocow and extent-size-hint do not apply here and are ignored. */
async function createFile(spec: FileCreateSpec): Promise<void> {
  const prealloc = spec.preallocation ?? 'off';
  try {
    // QEMU has emptied the file before it finds the mode unsupported.
    await createHostFile(spec.filename, prealloc === 'metadata' ? 0 : spec.size, prealloc === 'metadata' ? 'off' : prealloc);
    if (prealloc === 'metadata') throw invalid('Unsupported preallocation mode: metadata');
  } catch (err) {
    const errno = (err as { errno?: string }).errno;
    if (typeof errno === 'string') throw new BlockError('IO', `Could not create '${spec.filename}': ${strerror(errno)}`, { errno, cause: err });
    throw err;
  }
}

/** qcow2_co_create's checks in QEMU's order and words, then the image written into the node's bytes. */
async function createQcow2OnNode(spec: Qcow2CreateSpec): Promise<void> {
  const node = await spec.file();
  if (spec.size % 512 !== 0) throw invalid('Image size must be a multiple of 512 bytes');
  const version = spec.version === 'v2' ? 2 : 3;
  const clusterSize = spec.clusterSize ?? 65536;
  if (spec.extendedL2 && version < 3) throw invalid('Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  if (!isPowerOf2(clusterSize) || clusterSize < 512 || clusterSize > 2 * 1024 * 1024) {
    throw invalid('Cluster size must be a power of two between 512 and 2048k');
  }
  const prealloc = spec.preallocation ?? 'off';
  if (spec.backingFile !== undefined && prealloc !== 'off') throw invalid('Backing file and preallocation can only be used at the same time if extended_l2 is on');
  if (spec.backingFormat !== undefined && spec.backingFile === undefined) throw invalid('Backing format cannot be used without backing file');
  if (version < 3 && spec.lazyRefcounts) throw invalid('Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  const refcountBits = spec.refcountBits ?? 16;
  if (refcountBits > 64 || !isPowerOf2(refcountBits)) throw invalid('Refcount width must be a power of two and may not exceed 64 bits');
  if (version < 3 && refcountBits !== 16) {
    throw invalid('Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)');
  }
  if (spec.compressionType === 'zstd' && version < 3) throw invalid('Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  // What QEMU can do and blockemu cannot yet: refused clearly instead of writing an image that lacks it.
  for (const member of spec.unsupported ?? []) throw unsupported(`qcow2 option '${member}'`);
  if (spec.extendedL2) throw unsupported("qcow2 option 'extended-l2'");
  if (spec.compressionType === 'zstd') throw unsupported('qcow2 compression type zstd');
  if (prealloc !== 'off') throw unsupported(`qcow2 preallocation mode ${prealloc}`);
  // QEMU writes through a BlockBackend taking write and resize: a format node using the file, or a read-only node, refuses it.
  const blk = new BlockBackend({ perm: PERM_WRITE | PERM_RESIZE, shared: PERM_ALL });
  await blk.insert(node);
  try {
    await formatOnNode(node, spec, clusterSize, version, refcountBits);
  } finally {
    await blk.remove();
  }
}

async function formatOnNode(node: BlockNode, spec: Qcow2CreateSpec, clusterSize: number, version: number, refcountBits: number): Promise<void> {
  await formatQcow2(new NodeByteFile(node, node.nodeName), {
    format: 'qcow2',
    size: spec.size,
    clusterSize,
    compat: version === 2 ? '0.10' : '1.1',
    refcountBits,
    lazyRefcounts: spec.lazyRefcounts ?? false,
    backingFile: spec.backingFile,
    backingFormat: spec.backingFormat as ImageFormat | undefined,
  });
}

function isPowerOf2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

