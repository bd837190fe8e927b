import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from './perm.js';

/**
 * What a parent needs of a child (QEMU 7.2's bdrv_default_perms and
 * raw_child_perm), as pure functions of the child's role and the parent's
 * own cumulative permissions. They live in the image layer because two
 * users need them: the block graph (src/blockdev), whose links carry them,
 * and the tools (qemu-img's and qemu-io's stand-ins), which open an image
 * chain without a graph and must still lock each file as QEMU would
 * (tool-perms.ts).
 */

/** What a child is to its parent (BdrvChildRole): its permissions follow from it. */
export const CHILD_DATA = 1 << 0;
export const CHILD_METADATA = 1 << 1;
export const CHILD_FILTERED = 1 << 2;
export const CHILD_COW = 1 << 3;
export const CHILD_PRIMARY = 1 << 4;
/** A format node's `file`: its data and metadata live there. */
export const CHILD_IMAGE = CHILD_DATA | CHILD_METADATA | CHILD_PRIMARY;
/** A filter's only child (blkdebug's `image`, copy-before-write's `file`, raw's `file` without offset or size). */
export const CHILD_FILTERED_PRIMARY = CHILD_FILTERED | CHILD_PRIMARY;

export interface PermPair {
  perm: number;
  shared: number;
}

/** bdrv_filter_default_perms: everything passes through to the filtered child. */
function filterPerms(perm: number, shared: number): PermPair {
  return { perm: perm & PERM_ALL, shared: shared & PERM_ALL };
}

/**
 * bdrv_default_perms: what a parent needs of a child given its own
 * cumulative permissions and the child's role. `parentWritable` is whether
 * the parent is (or, during a reopen, will be) writable: a writable format
 * node writes metadata even when nobody writes to it. `noIo` is the parent's
 * BDRV_O_NO_IO (qemu-img info opens so): then even metadata is not read,
 * so its file is not asked for consistent reads.
 */
export function defaultChildPerms(role: number, parentWritable: boolean, perm: number, shared: number, noIo = false): PermPair {
  if (role & CHILD_FILTERED) return filterPerms(perm, shared);
  if (role & CHILD_COW) {
    // Backing files are only read, consistently if the parent must be; they may change only if the parent tolerates that.
    const p = perm & PERM_CONSISTENT_READ;
    const s = (shared & PERM_WRITE ? PERM_WRITE | PERM_RESIZE : 0) | PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
    return { perm: p, shared: s };
  }
  let { perm: p, shared: s } = filterPerms(perm, shared);
  if (role & CHILD_METADATA) {
    if (parentWritable) p |= PERM_WRITE | PERM_RESIZE;
    // The metadata must stay consistent: nobody else writes or resizes the file.
    if (!noIo) p |= PERM_CONSISTENT_READ;
    s &= ~(PERM_WRITE | PERM_RESIZE);
  }
  if (role & CHILD_DATA) {
    s &= ~PERM_RESIZE;
    if (p & PERM_WRITE_UNCHANGED) p |= PERM_WRITE;
    if (p & PERM_WRITE) p |= PERM_RESIZE;
  }
  return { perm: p, shared: s };
}

/**
 * raw_child_perm: the defaults, but write and resize only when a parent
 * takes them (a raw node has no metadata of its own to write).
 */
export function rawChildPerm(role: number, writable: boolean, perm: number, shared: number): PermPair {
  const p = defaultChildPerms(role, writable, perm, shared);
  return { perm: (p.perm & ~(PERM_WRITE | PERM_RESIZE)) | (perm & (PERM_WRITE | PERM_RESIZE)), shared: p.shared };
}

/**
 * block_crypto_child_perms (the luks format): the defaults for its image
 * file, but, as it writes no metadata of its own, write and resize only
 * when a parent takes them, and shared as far as its parents share them.
 */
export function cryptoChildPerm(role: number, writable: boolean, perm: number, shared: number, noIo = false): PermPair {
  const p = defaultChildPerms(role, writable, perm, shared, noIo);
  const wr = PERM_WRITE | PERM_RESIZE;
  return { perm: (p.perm & ~wr) | (perm & wr), shared: p.shared | (shared & wr) };
}
