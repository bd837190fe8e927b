import { errnoOf } from '../../image/errno.js';

/**
 * The NBD protocol's numbers (include/block/nbd.h, nbd/nbd-internal.h of
 * QEMU 7.2) and the names nbd/common.c gives them in messages.
 */

export const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const OPTS_MAGIC = 0x49484156454f5054n; // "IHAVEOPT"
export const REP_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Largest request payload and option length (NBD_MAX_BUFFER_SIZE). */
export const MAX_BUFFER_SIZE = 32 << 20;
/** Longest export name, description or meta context query (NBD_MAX_STRING_SIZE). */
export const MAX_STRING_SIZE = 4096;
/** Extents one block status chunk may hold (1 MiB of them, as QEMU). */
export const MAX_BLOCK_STATUS_EXTENTS = (1 << 20) / 8;
/** Requests a client may have in flight (MAX_NBD_REQUESTS). */
export const MAX_REQUESTS = 16;

/** Handshake flags (server) and client flags. */
export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;
export const FLAG_C_FIXED_NEWSTYLE = 1;
export const FLAG_C_NO_ZEROES = 2;

/** Transmission flags. */
export const TF = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

const ERR = 2 ** 31;
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
  ERR_BLOCK_SIZE_REQD: ERR + 8,
} as const;

export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;
export const CMD_FLAG = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const;

export const REPLY_FLAG_DONE = 1;
export const REPLY_TYPE = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: (1 << 15) | 1, ERROR_OFFSET: (1 << 15) | 2 } as const;

/** Extent flags of base:allocation and of dirty bitmaps. */
export const STATE_HOLE = 1;
export const STATE_ZERO = 2;
export const STATE_DIRTY = 1;

/** Meta context ids as QEMU numbers them; bitmap i is DIRTY_BITMAP + i. */
export const META_ID = { BASE_ALLOCATION: 0, ALLOCATION_DEPTH: 1, DIRTY_BITMAP: 2 } as const;

/** Error numbers on the wire. */
export const NBD_ERRNO = { EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108 } as const;

/** The errno name of a failed request (EIO for failures that are not I/O errors). */
export function errnoName(err: unknown): string {
  try {
    return errnoOf(err);
  } catch {
    return 'EIO';
  }
}

/** system_errno_to_nbd_errno, from the errno name a BlockError carries. */
export function nbdErrno(errno: string | undefined): number {
  switch (errno) {
    case 'EPERM':
    case 'EROFS':
      return NBD_ERRNO.EPERM;
    case 'EIO':
      return NBD_ERRNO.EIO;
    case 'ENOMEM':
      return NBD_ERRNO.ENOMEM;
    case 'EDQUOT':
    case 'EFBIG':
    case 'ENOSPC':
      return NBD_ERRNO.ENOSPC;
    case 'EOVERFLOW':
      return NBD_ERRNO.EOVERFLOW;
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      return NBD_ERRNO.ENOTSUP;
    case 'ESHUTDOWN':
      return NBD_ERRNO.ESHUTDOWN;
    default:
      return NBD_ERRNO.EINVAL;
  }
}

const OPT_NAMES: Record<number, string> = {
  [OPT.EXPORT_NAME]: 'export name',
  [OPT.ABORT]: 'abort',
  [OPT.LIST]: 'list',
  [OPT.STARTTLS]: 'starttls',
  [OPT.INFO]: 'info',
  [OPT.GO]: 'go',
  [OPT.STRUCTURED_REPLY]: 'structured reply',
  [OPT.LIST_META_CONTEXT]: 'list meta context',
  [OPT.SET_META_CONTEXT]: 'set meta context',
};

/** nbd_opt_lookup. */
export function optName(opt: number): string {
  return OPT_NAMES[opt] ?? '<unknown>';
}

const CMD_NAMES: Record<number, string> = {
  [CMD.READ]: 'read',
  [CMD.WRITE]: 'write',
  [CMD.DISC]: 'disconnect',
  [CMD.FLUSH]: 'flush',
  [CMD.TRIM]: 'trim',
  [CMD.CACHE]: 'cache',
  [CMD.WRITE_ZEROES]: 'write zeroes',
  [CMD.BLOCK_STATUS]: 'block status',
};

/** nbd_cmd_lookup. */
export function cmdName(cmd: number): string {
  return CMD_NAMES[cmd] ?? '<unknown>';
}
