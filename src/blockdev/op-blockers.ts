import { BlockError } from '../image/errors.js';

/** Operations a node can be blocked for (BlockOpType). */
export type BlockOp =
  | 'backup-source'
  | 'backup-target'
  | 'change'
  | 'commit-source'
  | 'commit-target'
  | 'drive-del'
  | 'eject'
  | 'external-snapshot'
  | 'internal-snapshot'
  | 'internal-snapshot-delete'
  | 'mirror-source'
  | 'mirror-target'
  | 'resize'
  | 'stream'
  | 'replace';

/** One reason a node is busy, and the operations it still allows. */
export interface OpBlocker {
  readonly reason: string;
  readonly allows: ReadonlySet<BlockOp>;
}

/**
 * A job's blocker on the nodes it uses (block_job_add_bdrv's
 * bdrv_op_block_all): every operation.
 */
export function jobBlocker(jobType: string): OpBlocker {
  return { reason: `block device is in use by block job: ${jobType}`, allows: new Set() };
}

/**
 * An overlay's blocker on its backing node (bdrv_backing_attach): commit
 * and stream still work on a backing chain, and backups may read or write
 * it.
 */
export function backingBlocker(overlayName: string): OpBlocker {
  return {
    reason: `node is used as backing hd of '${overlayName}'`,
    allows: new Set<BlockOp>(['commit-target', 'stream', 'backup-source', 'backup-target']),
  };
}

/**
 * QEMU's op blockers on one node (bs->op_blockers): an operation is
 * refused while any blocker that does not allow it is set, naming the
 * newest such blocker.
 */
export class OpBlockers {
  private readonly list: OpBlocker[] = [];

  add(b: OpBlocker): void {
    this.list.unshift(b);
  }

  remove(b: OpBlocker): void {
    const i = this.list.indexOf(b);
    if (i >= 0) this.list.splice(i, 1);
  }

  /** The blocker that refuses `op`, if any. */
  blocking(op: BlockOp): OpBlocker | undefined {
    return this.list.find((b) => !b.allows.has(op));
  }

  /** bdrv_op_is_blocked: throws "Node 'x' is busy: <reason>". */
  check(nodeName: string, op: BlockOp): void {
    const b = this.blocking(op);
    if (b) throw new BlockError('INVALID_ARGUMENT', `Node '${nodeName}' is busy: ${b.reason}`);
  }

  get empty(): boolean {
    return this.list.length === 0;
  }
}
