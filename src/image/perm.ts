/**
 * QEMU 7.2's block-layer permissions (include/block/block-common.h, BLK_PERM_*):
 * what a user of a node may do with it, and, as a mask of "shared" bits, what it
 * lets others do meanwhile. The bit numbers matter beyond this process: the
 * file-posix lock bytes are 100 + bit and 200 + bit (see file-lock.ts).
 */
export const PERM_CONSISTENT_READ = 0x01;
export const PERM_WRITE = 0x02;
export const PERM_WRITE_UNCHANGED = 0x04;
export const PERM_RESIZE = 0x08;
export const PERM_ALL = 0x0f;

/** The number of permission bits (QEMU's PERM_FOREACH runs over these). */
export const PERM_BITS = 4;

const NAMES: readonly (readonly [number, string])[] = [
  [PERM_CONSISTENT_READ, 'consistent read'],
  [PERM_WRITE, 'write'],
  [PERM_WRITE_UNCHANGED, 'write unchanged'],
  [PERM_RESIZE, 'resize'],
];

export type PermQapiName = 'consistent-read' | 'write' | 'write-unchanged' | 'resize';
/** QAPI's BlockPermission names, in the enum's order (the bit order). */
export const PERM_QAPI_NAMES: readonly (readonly [number, PermQapiName])[] = [
  [PERM_CONSISTENT_READ, 'consistent-read'],
  [PERM_WRITE, 'write'],
  [PERM_WRITE_UNCHANGED, 'write-unchanged'],
  [PERM_RESIZE, 'resize'],
];

/** The names of the bits in `perm`, joined by ", " in bit order, as bdrv_perm_names words them in messages. */
export function permNames(perm: number): string {
  return NAMES.filter(([bit]) => (perm & bit) !== 0)
    .map(([, name]) => name)
    .join(', ');
}
