/**
 * Typed errors for the block stack. Every failure a user can cause (a bad image,
 * a request past the end, an unsupported feature) is a BlockError with a stable
 * `code` and a message a person understands. `qmpClass` names the QAPI error
 * class the QMP layer reports; only src/qmp turns it into wire JSON.
 */
export type QmpErrorClass =
  | 'GenericError'
  | 'CommandNotFound'
  | 'DeviceNotActive'
  | 'DeviceNotFound'
  | 'KVMMissingCap';

export type BlockErrorCode =
  | 'INVALID_IMAGE' // the file is not a valid image of its format (bad magic, corrupt tables …)
  | 'UNSUPPORTED' // a valid image using a feature we do not implement
  | 'OUT_OF_RANGE' // request outside the device
  | 'READ_ONLY' // write to a read-only image
  | 'INVALID_ARGUMENT' // bad option or parameter
  | 'IO' // the host file failed (errno says how)
  | 'NOT_FOUND'
  | 'LOCKED' // another process holds a conflicting image lock (QEMU's lock bytes)
  | 'PERMISSION' // a user of a node needs what another refuses (QEMU's permission conflicts)
  | 'CLOSED'; // the image was closed

export class BlockError extends Error {
  readonly code: BlockErrorCode;
  readonly qmpClass: QmpErrorClass;
  /** POSIX errno name (EIO, ENOSPC, …) when the failure is an I/O error. */
  readonly errno: string | undefined;
  /**
   * Lines QEMU appends to the message as a hint (error_append_hint): the
   * command line prints them after it, QMP leaves them out.
   */
  readonly hint: string | undefined;

  constructor(
    code: BlockErrorCode,
    message: string,
    opts: { qmpClass?: QmpErrorClass; errno?: string; cause?: unknown; hint?: string } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BlockError';
    this.code = code;
    this.qmpClass = opts.qmpClass ?? 'GenericError';
    this.errno = opts.errno;
    this.hint = opts.hint;
  }
}

/** A fs error turned into a BlockError that keeps its errno. */
export function ioError(what: string, err: unknown): BlockError {
  if (err instanceof BlockError) return err;
  const e = err as NodeJS.ErrnoException;
  const errno = typeof e?.code === 'string' ? e.code : 'EIO';
  const msg = e?.message ?? String(err);
  return new BlockError('IO', `${what}: ${msg}`, { errno, cause: err });
}

export function invalidImage(filename: string, what: string): BlockError {
  return new BlockError('INVALID_IMAGE', `Could not open '${filename}': ${what}`);
}

/**
 * The hint QEMU prints on the line after the message (error_append_hint:
 * a lock refusal's "Is another process using the image [x]?"), wherever it
 * is among the error's causes (a backing file's refusal is wrapped in its
 * overlay's words, and error_prepend keeps the hint).
 */
export function errorHint(err: unknown): string | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if (e instanceof BlockError && e.hint !== undefined) return e.hint;
  return undefined;
}
