import { BlockError } from './errors.js';
import { HostFile } from './file.js';
import { ZERO_CHUNK } from './request.js';

/** How a new host file's bytes are reserved (QEMU's PreallocMode as file-posix supports it). */
export type FilePreallocation = 'off' | 'falloc' | 'full';

/** The step of raw_co_create that failed: QEMU words each differently ("Could not create", "Could not resize file", …). */
export type FileCreateStep = 'create' | 'resize' | 'preallocate';

/** A failed creation, with the step and the system's errno, for the caller's message. */
export class FileCreateError extends BlockError {
  constructor(
    readonly step: FileCreateStep,
    errno: string,
    cause?: unknown,
  ) {
    super('IO', `${step} failed (${errno})`, { errno, cause });
  }
}

const UINT64_SPAN = 1n << 64n;

/**
 * The errno ftruncate/fallocate would give for `size` before anything is
 * written, or undefined when the system must be asked. QEMU passes the
 * uint64 size on as an off_t, so 2^63 and up are negative: EINVAL. Node
 * cannot pass a length past 2^53 to the system at all; such a file is
 * past the limit of every common host file system but XFS and tmpfs
 * (ext4's is 16 TiB), so it is refused as those refuse it: EFBIG.
 */
function sizeErrno(size: bigint): string | undefined {
  const asOffT = size >= 1n << 63n ? size - UINT64_SPAN : size;
  if (asOffT < 0n) return 'EINVAL';
  if (asOffT > BigInt(Number.MAX_SAFE_INTEGER)) return 'EFBIG';
  return undefined;
}

const errnoOf = (err: unknown): string => (err as { errno?: string }).errno ?? (err as { code?: string }).code ?? 'EIO';

/**
 * Creates or empties the host file at `path` and gives it `size` bytes, as
 * file-posix raw_co_create does: the file is created (and stays, whatever
 * fails next), emptied, then resized to the exact size (no rounding; the
 * size is a uint64 from QMP, so it may be a bigint). `falloc` and `full`
 * both write zeroes, since Node has no posix_fallocate: the blocks are
 * allocated either way, which is what a client asking for falloc wants.
 * The length is set before the zeroes are written (QEMU's full mode does
 * so too), so a size the file system refuses fails at once.
 */
export async function createHostFile(path: string, size: number | bigint, preallocation: FilePreallocation = 'off'): Promise<void> {
  let file: HostFile;
  try {
    file = await HostFile.open(path, { create: true });
  } catch (err) {
    throw new FileCreateError('create', errnoOf(err), err);
  }
  const failing = preallocation === 'falloc' ? 'preallocate' : 'resize';
  try {
    await file.truncate(0);
    const refused = sizeErrno(BigInt(size));
    if (refused !== undefined) throw new FileCreateError(failing, refused);
    const length = Number(size);
    try {
      await file.truncate(length);
    } catch (err) {
      throw new FileCreateError(failing, errnoOf(err), err);
    }
    if (preallocation !== 'off') {
      try {
        for (let off = 0; off < length; off += ZERO_CHUNK.length) await file.write(off, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, length - off)));
      } catch (err) {
        throw new FileCreateError('preallocate', errnoOf(err), err);
      }
    }
    await file.flush();
  } finally {
    await file.close();
  }
}
