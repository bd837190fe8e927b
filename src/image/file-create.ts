import { BlockError } from './errors.js';
import { HostFile } from './file.js';
import { ZERO_CHUNK } from './request.js';

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
  const file = await HostFile.open(path, { create: true });
  try {
    await file.truncate(0);
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
