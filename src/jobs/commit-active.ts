import type { BlockNode } from '../blockdev/node.js';
import { reopenSetReadOnly } from '../blockdev/reopen.js';
import type { BlockJobStart } from './block-job.js';
import type { MirrorJob } from './mirror.js';
import { startMirror } from './mirror-start.js';

/** What qmp_block_commit hands to commit_active_start (the job's id defaults to the device's name, '' in the storage daemon). */
export interface ActiveCommitStart extends BlockJobStart {
  /** The active layer (or a node something writes to) whose data goes down into `base`. */
  top: BlockNode;
  base: BlockNode;
}

/**
 * commit_active_start: committing the active layer (or a node something
 * writes to) is a mirror job of type commit from `top` into `base`, which
 * lies in top's chain — only what is above base is copied, base's own
 * chain is left as it is, and on-error stands for both sides. It does not
 * complete by itself: once ready, job-complete puts base in top's place.
 * Base is made writable for the job and read-only again only if the job
 * cannot start (QEMU leaves it writable after the job, whatever its end).
 */
export async function startActiveCommit(s: ActiveCommitStart): Promise<MirrorJob> {
  const baseReadOnly = s.base.readOnly;
  if (baseReadOnly) await reopenSetReadOnly(s.reopen, s.base, false);
  try {
    const job = await startMirror({
      graph: s.graph,
      listener: s.events,
      checkId: (id) => s.jobs.checkId(id),
      id: s.id,
      jobType: 'commit',
      source: s.top,
      target: s.base,
      speed: s.speed,
      granularity: 0,
      bufSize: 0,
      backingMode: 'leave',
      zeroTarget: false,
      onSourceError: s.onError,
      onTargetError: s.onError,
      unmap: true,
      filterNodeName: s.filterNodeName,
      copyMode: 'background',
      noneMode: false,
      base: s.base,
      autoComplete: false,
      autoFinalize: s.autoFinalize,
      autoDismiss: s.autoDismiss,
      clock: s.jobs.clock,
    });
    s.jobs.add(job);
    return job;
  } catch (err) {
    // The job's own error is the one reported.
    if (baseReadOnly) await reopenSetReadOnly(s.reopen, s.base, true).catch(() => undefined);
    throw err;
  }
}
