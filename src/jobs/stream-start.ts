import { BlockBackend } from '../blockdev/block-backend.js';
import { cowChild, filteredChild, filterOrCowChild, findOverlay } from '../blockdev/chain.js';
import type { CopyOnReadNode } from '../blockdev/drivers/copy-on-read.js';
import { freezeChain, unfreezeChain } from '../blockdev/freeze.js';
import { insertNode } from '../blockdev/insert-node.js';
import type { BlockNode } from '../blockdev/node.js';
import { reopenSetReadOnly } from '../blockdev/reopen.js';
import { BlockError } from '../image/errors.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../image/perm.js';
import { type BlockJobStart, startOptions } from './block-job.js';
import { dropCorFilter, StreamJob } from './stream.js';

export interface StreamStart extends BlockJobStart {
  /** The node that receives the data. */
  bs: BlockNode;
  /** The node below the range (its data stays there); none: the whole chain. Exclusive with `bottom`. */
  base?: BlockNode;
  /** The lowest node whose data is copied. */
  bottom?: BlockNode;
  backingFile?: string;
}

/** What the job's users of the top may do (basic_flags): read it consistently, and write what does not change what it reads. */
const BASIC = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;

/** base_overlay and above_base of stream_start: the lowest image copied, and the node right above the base (filters included). */
function range(bs: BlockNode, base: BlockNode | undefined, bottom: BlockNode | undefined): { baseOverlay: BlockNode; aboveBase: BlockNode } {
  if (bottom) return { baseOverlay: bottom, aboveBase: bottom };
  const baseOverlay = findOverlay(bs, base);
  if (!baseOverlay) throw new BlockError('INVALID_ARGUMENT', `'${base?.nodeName}' is not in the backing chain of '${bs.nodeName}'`);
  let aboveBase = baseOverlay;
  if (cowChild(aboveBase) !== base) {
    aboveBase = cowChild(aboveBase)!;
    while (filteredChild(aboveBase) !== base) aboveBase = filteredChild(aboveBase)!;
  }
  return { baseOverlay, aboveBase };
}

/**
 * stream_start, in QEMU's order: a read-only top is reopened read-write
 * (its chain frozen meanwhile), the copy-on-read filter goes above it
 * (limited to the range, freezing the chain down to it), the job is
 * created on the filter, its BlockBackend reads through the filter, and
 * its links hold the top and block the nodes in between. A failure after
 * the job exists ends it (created, null) and undoes the rest.
 */
export async function startStream(s: StreamStart): Promise<StreamJob> {
  const { graph, bs } = s;
  const { baseOverlay, aboveBase } = range(bs, s.base, s.bottom);
  const wasReadOnly = bs.readOnly;
  if (wasReadOnly) {
    freezeChain(bs, aboveBase);
    try {
      await reopenSetReadOnly(s.reopen, bs, false);
    } finally {
      unfreezeChain(bs, aboveBase);
    }
  }
  let filter: CopyOnReadNode | undefined;
  let job: StreamJob | undefined;
  try {
    const spec = { driver: 'copy-on-read', file: bs.nodeName, bottom: baseOverlay.nodeName, ...(s.filterNodeName !== undefined ? { 'node-name': s.filterNodeName } : {}) };
    filter = (await insertNode(graph, spec, bs)) as CopyOnReadNode;
    if (s.filterNodeName === undefined) filter.implicit = true;
    s.jobs.checkId(s.id);
    const blk = new BlockBackend({ perm: PERM_CONSISTENT_READ, shared: BASIC | PERM_WRITE });
    job = new StreamJob(s.id, s.events, {
      graph,
      top: bs,
      filter,
      blk,
      baseOverlay,
      aboveBase,
      backingFile: s.backingFile,
      onError: s.onError,
      wasReadOnly,
      nameOf: s.nameOf,
      reopen: s.reopen,
      ...startOptions(s),
    });
    await job.nodes.add('main node', filter, 0, PERM_ALL);
    if (s.speed < 0) throw new BlockError('INVALID_ARGUMENT', "Parameter 'speed' expects a non-negative value");
    await blk.insert(filter);
    await job.nodes.add('active node', bs, 0, BASIC | PERM_WRITE);
    // The nodes between the top and the base leave the chain at the end; the job reads each block once, so nobody may change them.
    const base = filterOrCowChild(aboveBase);
    for (let n = filterOrCowChild(bs); n && n !== base; n = filterOrCowChild(n)) await job.nodes.add('intermediate node', n, 0, BASIC);
  } catch (err) {
    if (job) await job.earlyFail();
    else {
      if (filter) await dropCorFilter(graph, filter);
      if (wasReadOnly) await reopenSetReadOnly(s.reopen, bs, true).catch(() => undefined);
    }
    throw err;
  }
  s.jobs.add(job);
  job.start();
  return job;
}
