import { BlockError } from './errors.js';
import { HostFile } from './file.js';
import { isZero, ZERO_CHUNK } from './request.js';

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
    message = `${step} failed (${errno})`,
  ) {
    super('IO', message, { errno, cause });
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

/** MAX_BLOCKSIZE in file-posix: the largest block a device may need aligned. */
const MAX_BLOCKSIZE = 4096;

/**
 * file-posix's allocate_first_block: when a regular file grows from empty
 * (creation, or a truncate of an empty file) it writes zeroes over its
 * first block, 512 bytes if the new length is under 4 KiB and 4 KiB
 * otherwise, so that later alignment probing finds real blocks. The write
 * may reach past a length under 512 and so lengthen the file, as in QEMU.
 * Failures are ignored, as there.
 */
export async function allocateFirstBlock(file: { write(offset: number, data: Uint8Array): Promise<void> }, length: number): Promise<void> {
  const n = length < MAX_BLOCKSIZE ? 512 : MAX_BLOCKSIZE;
  await file.write(0, ZERO_CHUNK.subarray(0, n)).catch(() => undefined);
}

/**
 * The files createHostFile made without preallocation, by path, with their
 * stamp: all zeroes, though allocate_first_block gave them a block on
 * disk, which hides from a file node opening one that it is fresh (see
 * FileNode: a file with no blocks is known to be). The last few only: a
 * file is opened again soon after it is made, if at all.
 */
const madeZeroed = new Map<string, string>();
const REMEMBERED = 32;

async function rememberZeroed(file: HostFile): Promise<void> {
  madeZeroed.delete(file.path);
  madeZeroed.set(file.path, await file.stamp());
  if (madeZeroed.size > REMEMBERED) madeZeroed.delete(madeZeroed.keys().next().value!);
}

/**
 * Whether `file` is one createHostFile made without preallocation and
 * nothing has changed since: its stamp is the same and its first block
 * (the only blocks it has, so the only place a write could have gone
 * without changing the stamp's block count) still reads as zeroes. Asked
 * once per creation.
 */
export async function untouchedSinceCreated(file: HostFile): Promise<boolean> {
  const stamp = madeZeroed.get(file.path);
  if (stamp === undefined) return false;
  madeZeroed.delete(file.path);
  if (stamp !== (await file.stamp())) return false;
  return isZero(await file.read(0, Math.min(MAX_BLOCKSIZE, await file.size())));
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
 * so too), so a size the file system refuses fails at once. Without full
 * preallocation the first block is then written (allocateFirstBlock).
 */
export async function createHostFile(path: string, size: number | bigint, preallocation: FilePreallocation = 'off'): Promise<void> {
  let file: HostFile;
  try {
    file = await HostFile.open(path, { create: true });
  } catch (err) {
    // qemu_create's words, with the reason the open gave.
    const reason = err instanceof Error ? err.message.replace(/^Could not open '.*?': /s, '') : String(err);
    throw new FileCreateError('create', errnoOf(err), err, `Could not create '${path}': ${reason}`);
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
    if (preallocation !== 'full' && length > 0) await allocateFirstBlock(file, length);
    await file.flush();
    if (preallocation === 'off') await rememberZeroed(file);
  } finally {
    await file.close();
  }
}
