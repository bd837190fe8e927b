import { BlockError } from '../image/errors.js';
import type { Extent } from '../image/types.js';
import type { BlockNode } from './node.js';

/**
 * The snapshot-access API of QEMU 7.2 (bdrv_co_preadv_snapshot,
 * bdrv_co_snapshot_block_status, bdrv_co_pdiscard_snapshot): what a
 * driver that keeps a point-in-time view of its data offers to a
 * `snapshot-access` node above it. Only copy-before-write does.
 */
export interface SnapshotApi {
  /** Reads the point-in-time data into `buf` (every byte of it). */
  snapshotReadInto(buf: Uint8Array, offset: number): Promise<void>;
  /** Block status of the point-in-time view from `offset` (the extent may be shorter than asked). */
  snapshotBlockStatus(offset: number, length: number): Promise<Extent>;
  /** Drops the range from the snapshot: later writes there need not preserve it. */
  snapshotDiscard(offset: number, length: number): Promise<void>;
}

function hasSnapshotApi(node: BlockNode): node is BlockNode & SnapshotApi {
  return typeof (node as Partial<SnapshotApi>).snapshotReadInto === 'function';
}

/** The node's snapshot API, or ENOTSUP as bdrv_co_*_snapshot answer for drivers without one. */
export function snapshotApi(node: BlockNode): SnapshotApi {
  if (hasSnapshotApi(node)) return node;
  throw new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' });
}
