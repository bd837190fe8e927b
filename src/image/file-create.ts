import { BlockError } from './errors.js';
import { HostFile } from './file.js';
import { ZERO_CHUNK } from './request.js';
import { PERM_ALL, PERM_RESIZE, PERM_WRITE } from './perm.js';

/** How a new host file's bytes are reserved (QEMU's PreallocMode as file-posix supports it). */
export type FilePreallocation = 'off' | 'falloc' | 'full';

/**
 * Creates or empties the host file at `path` and gives it `size` bytes
 * (file-posix raw_co_create: exact size, no rounding). `falloc` and `full`
 * both write zeroes, since Node has no posix_fallocate: the blocks are
 * allocated either way, which is what a client asking for falloc wants.
 * The open failure carries the system's errno for the caller's message.
 */
export async function createHostFile(path: string, size: number, preallocation: FilePreallocation = 'off'): Promise<void> {
  if (!Number.isSafeInteger(size) || size < 0) throw new BlockError('INVALID_ARGUMENT', `Invalid image size ${size}`);
  const file = await openNewFile(path);
  try {
    if (preallocation !== 'off') {
      for (let off = 0; off < size; off += ZERO_CHUNK.length) {
        await file.write(off, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, size - off)));
      }
    }
    await file.truncate(size);
    await file.flush();
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

/**
 * The start of file-posix's raw_co_create, for every image blockemu
 * creates: the file is created if missing but not emptied yet; the
 * descriptor takes write and resize and shares all but resize (locking
 * where OFD locks work), and only when no other user forbids that is the
 * file emptied. So creating over an image someone has open fails with
 * QEMU's "Failed to get \"write\" lock" and leaves it alone. The locks go
 * when the returned file is closed.
 */
export async function openNewFile(path: string): Promise<HostFile> {
  const file = await HostFile.open(path, { create: true, keep: true, locking: 'auto' });
  try {
    await file.lockPerms(CREATE_PERMS.perm, CREATE_PERMS.shared);
    await file.truncate(0);
    return file;
  } catch (err) {
    await file.close();
    throw err;
  }
}
