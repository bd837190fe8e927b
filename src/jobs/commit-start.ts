import { skipFilters } from '../blockdev/chain.js';
import type { BlockNode } from '../blockdev/node.js';
import { BlockError } from '../image/errors.js';
import { PERM_ALL } from '../image/perm.js';
import { type BlockJobStart, startOptions } from './block-job.js';
import { CommitJob } from './commit.js';

export interface CommitStart extends BlockJobStart {
  /** The command's device: the job's main node. */
  bs: BlockNode;
  top: BlockNode;
  base: BlockNode;
  backingFile?: string;
}

/**
 * commit_start: refused when top and base are one image; then the job is
 * created on the device (its id checked first), its speed set, and the
 * job sets the chain up (CommitJob.setUp). A failure after the job exists
 * undoes the set-up and ends the job (created, null).
 */
export async function startCommit(s: CommitStart): Promise<CommitJob> {
  if (skipFilters(s.top) === skipFilters(s.base)) throw new BlockError('INVALID_ARGUMENT', 'Invalid files for merge: top and base are the same');
  s.jobs.checkId(s.id);
  const job = new CommitJob(s.id, s.events, {
    graph: s.graph,
    top: s.top,
    base: s.base,
    backingFile: s.backingFile,
    onError: s.onError,
    nameOf: s.nameOf,
    reopen: s.reopen,
    ...startOptions(s),
  });
  try {
    await job.nodes.add('main node', s.bs, 0, PERM_ALL);
    if (s.speed < 0) throw new BlockError('INVALID_ARGUMENT', "Parameter 'speed' expects a non-negative value");
    await job.setUp(s.filterNodeName);
  } catch (err) {
    await job.abort();
    await job.earlyFail();
    throw err;
  }
  s.jobs.add(job);
  job.start();
  return job;
}
