import { errnoOf, strerror } from './errno.js';
import { BlockError } from './errors.js';
import { HostFile } from './file.js';
import { PERM_ALL, PERM_RESIZE, PERM_WRITE } from './perm.js';
import { isZero } from './request.js';
import { MAX_BLOCKSIZE, resizeFile } from './resize.js';

/** How a new host file's bytes are reserved (QEMU's PreallocMode as file-posix supports it). */
export type FilePreallocation = 'off' | 'falloc' | 'full';

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

/**
 * Creates or empties the host file at `path` and gives it `size` bytes, as
 * file-posix raw_co_create does, failing in its words: the file is created
 * ("Could not create", and it stays, whatever fails next), locked as
 * raw_co_create locks it (see openNewFile), emptied, then
 * resized to the exact size as file-posix truncates (resizeFile: no
 * rounding; a file growing from empty gets its first block written unless
 * fully preallocated). The size is a uint64 from QMP, so it may be a
 * bigint; one the system cannot take is refused before anything is
 * written.
 */
export async function createHostFile(path: string, size: number | bigint, preallocation: FilePreallocation = 'off'): Promise<void> {
  let file: HostFile;
  try {
    file = await HostFile.open(path, NEW_FILE);
  } catch (err) {
    const errno = errnoOf(err);
    throw new BlockError('IO', `Could not create '${path}': ${strerror(errno)}`, { errno, cause: err });
  }
  await lockAndEmpty(file);
  try {
    const refused = sizeErrno(BigInt(size));
    if (refused !== undefined) {
      const what = preallocation === 'falloc' ? 'Could not preallocate new data' : 'Could not resize file';
      throw new BlockError('IO', `${what}: ${strerror(refused)}`, { errno: refused });
    }
    await resizeFile(file, Number(size), preallocation);
    await file.flush();
    if (preallocation === 'off') await rememberZeroed(file);
  } finally {
    await file.close();
  }
}

/**
 * What file-posix's raw_co_create holds while it empties and sizes a new
 * (or existing) file: write and resize, sharing all but resize, so an
 * image someone uses is not truncated under them.
 */
export const CREATE_PERMS = { perm: PERM_WRITE | PERM_RESIZE, shared: PERM_ALL & ~PERM_RESIZE } as const;

/** Created if missing but not emptied yet (no O_TRUNC), locked where OFD locks work. */
const NEW_FILE = { create: true, keep: true, locking: 'auto' } as const;

/**
 * The start of file-posix's raw_co_create, for every image blockemu
 * creates: the file is created if missing, and only once its descriptor
 * holds CREATE_PERMS, checked against every other user, is it emptied. So
 * creating over an image someone has open fails with QEMU's "Failed to
 * get \"write\" lock" and leaves it alone. The locks go when the returned
 * file is closed.
 */
export async function openNewFile(path: string): Promise<HostFile> {
  const file = await HostFile.open(path, NEW_FILE);
  await lockAndEmpty(file);
  return file;
}

/** Takes CREATE_PERMS, then empties the file; closes it when either fails. */
async function lockAndEmpty(file: HostFile): Promise<void> {
  try {
    await file.lockPerms(CREATE_PERMS.perm, CREATE_PERMS.shared);
    await file.truncate(0);
  } catch (err) {
    await file.close();
    throw err;
  }
}
