import type { ByteFile } from './byte-file.js';
import { errnoOf, strerror } from './errno.js';
import { BlockError } from './errors.js';
import { ZERO_CHUNK } from './request.js';
import type { Preallocation } from './types.js';

/**
 * Resizing, the parts every format shares: the checks QEMU's
 * bdrv_co_truncate makes before any driver sees the request, and the host
 * file's own rules (file-posix's handle_aiocb_truncate), which a raw image
 * is and a qcow2 image's file follows when it grows or its tail is cut.
 */

/** QEMU's BDRV_MAX_LENGTH: INT64_MAX rounded down to 1 GiB, the largest size any node may have. */
export const BDRV_MAX_LENGTH = 9223372035781033984n;

/** The checks of bdrv_co_truncate, in its order, with its messages. */
export function checkResizeRequest(newSize: number, readOnly: boolean): void {
  if (newSize < 0) throw new BlockError('INVALID_ARGUMENT', 'Image size cannot be negative', { errno: 'EINVAL' });
  // QEMU's sizes are 64-bit; ours are numbers, exact only up to 2^53.
  if (!Number.isSafeInteger(newSize)) {
    throw new BlockError('INVALID_ARGUMENT', `Image size ${newSize} is beyond what blockemu supports (${Number.MAX_SAFE_INTEGER} bytes)`, { errno: 'EFBIG' });
  }
  if (readOnly) throw new BlockError('READ_ONLY', 'Image is read-only', { errno: 'EACCES' });
}

/** "what: strerror" as QEMU's error_setg_errno words it, keeping the errno. */
function failed(what: string, err: unknown): BlockError {
  let errno = 'EIO';
  try {
    errno = errnoOf(err);
  } catch {
    // Not an I/O error with an errno: reported as EIO, its message kept as the cause.
  }
  return new BlockError('IO', `${what}: ${strerror(errno)}`, { errno, cause: err });
}

/** Zeroes written over [from, to) of `file`, a chunk at a time (Node has no fallocate). */
export async function writeZeroes(file: ByteFile, from: number, to: number): Promise<void> {
  for (let off = from; off < to; off += ZERO_CHUNK.length) {
    await file.write(off, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, to - off)));
  }
}

/** MAX_BLOCKSIZE in file-posix: the largest block a device may need aligned. */
export const MAX_BLOCKSIZE = 4096;

/**
 * file-posix's allocate_first_block: a regular file that grows from empty
 * (created, or truncated up from nothing) gets zeroes written over its
 * first block, 512 bytes if the new length is under 4 KiB and 4 KiB
 * otherwise, so that later alignment probing finds real blocks. The write
 * may reach past a length under 512 and so lengthen the file, as in QEMU.
 * Failures are ignored, as there.
 */
async function allocateFirstBlock(file: ByteFile, length: number): Promise<void> {
  const n = length < MAX_BLOCKSIZE ? 512 : MAX_BLOCKSIZE;
  await file.write(0, ZERO_CHUNK.subarray(0, n)).catch(() => undefined);
}

/**
 * Gives a host file exactly `newSize` bytes, as file-posix does for a
 * regular file: `off` truncates or extends sparsely; `falloc` and `full`
 * only grow and write the new bytes as zeroes (full: and flush), and a
 * failure gives the file its old length back; `metadata` means nothing to
 * a file. Preallocation never applies to shrinking. A file growing from
 * empty gets its first block written, unless fully preallocated
 * (allocate_first_block).
 */
export async function resizeFile(file: ByteFile, newSize: number, prealloc: Preallocation = 'off'): Promise<void> {
  let current: number;
  try {
    current = await file.size();
  } catch (err) {
    throw failed('Could not stat file', err);
  }
  if (current > newSize && prealloc !== 'off') {
    throw new BlockError('UNSUPPORTED', 'Cannot use preallocation for shrinking files', { errno: 'ENOTSUP' });
  }
  const restoring = async (err: BlockError): Promise<never> => {
    await file.truncate(current).catch(() => undefined);
    throw err;
  };
  switch (prealloc) {
    case 'off':
      try {
        await file.truncate(newSize);
      } catch (err) {
        throw failed('Could not resize file', err);
      }
      if (current === 0 && newSize > 0) await allocateFirstBlock(file, newSize);
      return;
    case 'falloc':
      // posix_fallocate(current, newSize - current); Node has none, so the zeroes are written, after the length is set:
      // a size the file system refuses fails at once, as posix_fallocate's would, instead of after writing up to its limit.
      try {
        await file.truncate(newSize);
        await writeZeroes(file, current, newSize);
      } catch (err) {
        return restoring(failed('Could not preallocate new data', err));
      }
      if (current === 0 && newSize > 0) await allocateFirstBlock(file, newSize);
      return;
    case 'full':
      try {
        await file.truncate(newSize);
      } catch (err) {
        return restoring(failed('Could not resize file', err));
      }
      try {
        await writeZeroes(file, current, newSize);
      } catch (err) {
        return restoring(failed('Could not write zeros for preallocation', err));
      }
      try {
        await file.flush();
      } catch (err) {
        return restoring(failed('Could not flush file to disk', err));
      }
      return;
    case 'metadata':
      throw new BlockError('UNSUPPORTED', 'Unsupported preallocation mode: metadata', { errno: 'ENOTSUP' });
  }
}
