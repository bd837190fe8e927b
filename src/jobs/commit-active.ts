import type { BlockNode } from '../blockdev/node.js';
import { BlockError } from '../image/errors.js';
import type { BlockJobStart } from './block-job.js';

/** What qmp_block_commit hands to commit_active_start (the job's id defaults to the device's name, '' in the storage daemon). */
export interface ActiveCommitStart extends BlockJobStart {
  /** The active layer (or a node something writes to) whose data goes down into `base`. */
  top: BlockNode;
  base: BlockNode;
}

/**
 * commit_active_start: committing the active layer (or a node something
 * writes to) is a mirror job in QEMU ("active commit": job type commit,
 * a ready phase, block-job-complete pivots to base). blockemu has no
 * mirror engine yet, so this is refused here — the one place the mirror
 * work replaces. Every check of qmp_block_commit before this point is
 * QEMU's.
 */
export function startActiveCommit(s: ActiveCommitStart): never {
  throw new BlockError(
    'UNSUPPORTED',
    `Active commit is not implemented by blockemu yet: '${s.top.nodeName}' is the active layer (or has a writer), which QEMU commits with a mirror job; commit a layer below it with 'top-node'`,
  );
}
