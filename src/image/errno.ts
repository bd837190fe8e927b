import { constants } from 'node:os';
import { BlockError } from './errors.js';

/**
 * errno names and glibc's strerror() texts: QEMU's messages end in them
 * ("Could not resize file: File too large"; qemu-io prints "read failed:
 * Input/output error"), so the wording must be glibc's. Here in the image
 * layer, the lowest that words such messages; the layers above import it.
 */
const STRERROR: Record<string, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EINTR: 'Interrupted system call',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  E2BIG: 'Argument list too long',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EFAULT: 'Bad address',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  ENFILE: 'Too many open files in system',
  EMFILE: 'Too many open files',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  ESPIPE: 'Illegal seek',
  EROFS: 'Read-only file system',
  ERANGE: 'Numerical result out of range',
  ENAMETOOLONG: 'File name too long',
  ENOSYS: 'Function not implemented',
  ELOOP: 'Too many levels of symbolic links',
  EOVERFLOW: 'Value too large for defined data type',
  ENOTSUP: 'Operation not supported',
  EOPNOTSUPP: 'Operation not supported',
  ETIMEDOUT: 'Connection timed out',
  EADDRINUSE: 'Address already in use',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset by peer',
  EPIPE: 'Broken pipe',
  ESTALE: 'Stale file handle',
  EDQUOT: 'Disk quota exceeded',
  ENOMEDIUM: 'No medium found',
  ECANCELED: 'Operation canceled',
};

export function strerror(errno: string): string {
  const text = STRERROR[errno];
  if (text !== undefined) return text;
  const n = (constants.errno as Record<string, number>)[errno];
  return n === undefined ? `Unknown error ${errno}` : `Unknown error ${n}`;
}

/** The errno QEMU's block layer would have returned for a failure of ours without one. */
const CODE_ERRNO: Record<string, string> = {
  OUT_OF_RANGE: 'EIO',
  READ_ONLY: 'EPERM',
  UNSUPPORTED: 'ENOTSUP',
  INVALID_ARGUMENT: 'EINVAL',
  INVALID_IMAGE: 'EIO',
  IO: 'EIO',
  NOT_FOUND: 'ENOENT',
  CLOSED: 'ENOMEDIUM',
};

/**
 * The errno of a failed request. Block errors and Node's system errors carry
 * one; anything else is a bug in a driver, and hiding it behind "Input/output
 * error" would make it hard to find, so it is rethrown.
 */
export function errnoOf(err: unknown): string {
  if (err instanceof BlockError) return err.errno ?? CODE_ERRNO[err.code] ?? 'EIO';
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  throw err;
}

/** A failure as QEMU's messages end in it ("…: Input/output error"); one without an errno is told by its own message. */
export function strerrorOf(err: unknown): string {
  try {
    return strerror(errnoOf(err));
  } catch {
    return err instanceof Error ? err.message : String(err);
  }
}
