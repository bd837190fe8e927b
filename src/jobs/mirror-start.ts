import { defaultGranularity } from '../blockdev/bitmap-ops.js';
import { BlockBackend } from '../blockdev/block-backend.js';
import { backingChainNext, canReplace, chainContains, cowChild, filteredChild, filterOrCowChild, findOverlay, skipFilters } from '../blockdev/chain.js';
import { MirrorTopNode } from '../blockdev/drivers/mirror-top.js';
import { freezeChain, unfreezeChain } from '../blockdev/freeze.js';
import { appendOverlay, replaceNode, setBacking } from '../blockdev/graph-edit.js';
import { GraphTransaction } from '../blockdev/graph-transaction.js';
import type { BlockGraph } from '../blockdev/graph.js';
import type { BlockNode } from '../blockdev/node.js';
import { refreshPerms } from '../blockdev/permissions.js';
import { insertionOrder } from '../blockdev/options.js';
import { reopenSetReadOnly } from '../blockdev/reopen.js';
import { BlockError } from '../image/errors.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../image/perm.js';
import type { OnError } from './error-policy.js';
import type { JobOptions } from './job.js';
import { type CopyMode, DEFAULT_MIRROR_BUF_SIZE, MirrorJob, type MirrorListener } from './mirror.js';

/**
 * What becomes of the target's backing chain at the end (BlockMirrorBackingMode):
 * left as it is (blockdev-mirror), set to the source's (drive-mirror with a new image),
 * or opened from what the image names (drive-mirror mode=existing).
 */
export type BackingMode = 'leave' | 'source' | 'open';

export interface MirrorStartOptions extends JobOptions {
  graph: BlockGraph;
  listener: MirrorListener;
  id: string;
  jobType: 'mirror' | 'commit';
  source: BlockNode;
  target: BlockNode;
  replaces?: string;
  /** An int64, exact (see RateLimitedJob). */
  speed: number | bigint;
  /** 0: the target's default bitmap granularity. */
  granularity: number;
  /** 0: the default (16 MiB). */
  bufSize: number;
  backingMode: BackingMode;
  zeroTarget: boolean;
  onSourceError: OnError;
  onTargetError: OnError;
  unmap: boolean;
  filterNodeName?: string;
  copyMode: CopyMode;
  noneMode: boolean;
  /** sync=top's base (the source's backing node), a commit's base: only what lies above it is copied. */
  base?: BlockNode;
  autoComplete?: boolean;
  /** Throws QEMU's error for an id the job may not take (the job list's check). */
  checkId(id: string): void;
  /** Opens the target's backing chain from its image (backing mode 'open'). */
  openBacking?: (target: BlockNode) => Promise<void>;
  afterClean?: () => Promise<void>;
}

const fail = (message: string) => new BlockError('INVALID_ARGUMENT', message);

/** How many backing steps lie between `top` and `base` (filters count none): the depth block status reports for base's data. */
function depthOf(top: BlockNode, base: BlockNode): number {
  let depth = 0;
  for (let n: BlockNode | undefined = top; n && n !== base; ) {
    const f = filteredChild(n);
    if (f) n = f;
    else {
      depth++;
      n = cowChild(n);
    }
  }
  return depth;
}

/**
 * Where the shortest image between `top` and `base` (both left out) ends:
 * bdrv_is_allocated_above counts the zeroes read past a short layer's
 * end as that layer's data, so everything from there on is above the
 * base and an active commit copies it (iotest 274: a shorter middle
 * layer hides what the base holds past its end).
 */
function shortLayerEnd(top: BlockNode, base: BlockNode): number | undefined {
  let end: number | undefined;
  for (let n = filterOrCowChild(top); n && n !== base; n = filterOrCowChild(n)) {
    if (!filteredChild(n)) end = Math.min(end ?? Infinity, n.size());
  }
  return end;
}

/**
 * mirror_start_job: the checks it makes, the `mirror_top` filter put in
 * the source's place, the job with its links (main node, source, target)
 * and its access to the target, in QEMU's order — a failure once the job
 * exists fails it early (created, null) and takes the filter out again.
 * A target in the source's chain (active commit) also gets the layers in
 * between held and the chain frozen from the filter down to it, as those
 * layers leave the chain at completion. The job is started.
 */
export async function startMirror(o: MirrorStartOptions): Promise<MirrorJob> {
  const granularity = o.granularity || (await defaultGranularity(o.target));
  if (o.bufSize < 0) throw fail("Invalid parameter 'buf-size'");
  const bufSize = o.bufSize || DEFAULT_MIRROR_BUF_SIZE;
  const targetInfo = await o.target.imageInfo().catch(() => undefined);
  const targetCluster = targetInfo?.clusterSize ?? 0;
  // mirror_run's cow_bitmap: a target whose header names a backing file it was not opened with, and whose clusters are
  // larger than the chunks, gets whole clusters written, or its clusters would hold zeroes where its backing file has data.
  const cowRounding = !!targetInfo?.backingFilename && !backingChainNext(o.target) && granularity < (targetCluster || 512);
  if (skipFilters(o.source) === skipFilters(o.target)) throw fail("Can't mirror node into itself");
  const targetIsBacking = chainContains(o.source, o.target);

  const name = o.graph.assignName(o.filterNodeName);
  const filter = new MirrorTopNode(name, targetIsBacking, () => o.source.size());
  // Named by nobody: a reopen looks through it (bs->implicit).
  filter.implicit = o.filterNodeName === undefined;
  o.graph.add(filter, false);
  let appended = false;
  try {
    await GraphTransaction.run((tran) => appendOverlay(tran, filter, o.source));
    appended = true;
    // block_job_create checks the id only now, with the filter in place.
    o.checkId(o.id);
  } catch (err) {
    if (appended) await o.graph.removeFilter(filter);
    else {
      o.graph.forget(filter);
      await filter.close();
    }
    throw err;
  }

  const targetBackend = new BlockBackend({ perm: 0, shared: PERM_ALL });
  // Whether the chain from the filter to the target is frozen (so the end thaws it).
  const chain = { frozen: false };
  const job = new MirrorJob(o.id, o.listener, {
    ...o,
    bufSize: Math.ceil((cowRounding ? Math.max(bufSize, targetCluster) : bufSize) / granularity) * granularity,
    cowRounding,
    granularity,
    targetCluster,
    filter,
    targetBackend,
    baseDepth: o.base ? depthOf(o.source, o.base) : undefined,
    shortLayerEnd: o.base ? shortLayerEnd(o.source, o.base) : undefined,
    findNode: (n) => o.graph.get(n),
    exit: { finish: (j, abort) => finishMirror(o, j, targetBackend, chain, abort) },
  });
  try {
    // Nothing may resize the source while the job runs.
    await job.nodes.add('main node', filter, PERM_CONSISTENT_READ, PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED | PERM_WRITE);
    // block_job_create sets the speed right after: a negative one fails the job there.
    if (o.speed < 0) throw fail("Parameter 'speed' expects a non-negative value");
    // The target is written, not read consistently (nor resized) while the mirror runs; an active commit's base is in use all along.
    let perm = PERM_WRITE;
    let shared = PERM_WRITE_UNCHANGED;
    if (targetIsBacking) {
      if (o.target.size() < o.source.size()) perm |= PERM_RESIZE;
      shared |= PERM_CONSISTENT_READ | PERM_WRITE;
    } else if (chainContains(o.source, skipFilters(o.target))) {
      throw fail("Cannot mirror to a filter on top of a node in the source's backing chain");
    }
    await targetBackend.setPerm({ perm, shared });
    await targetBackend.insert(o.target);
    await job.nodes.add('source', o.source, 0, PERM_WRITE_UNCHANGED | PERM_WRITE | PERM_CONSISTENT_READ);
    await job.nodes.add('target', o.target, 0, PERM_ALL);
    if (targetIsBacking) {
      // Writes are shared so the job does not block itself at the target; consistent reads only where nothing but filters of it remain.
      await job.nodes.addIntermediate(filterOrCowChild(o.source), o.target, cowChild(findOverlay(o.source, o.target)!));
      freezeChain(filter, o.target);
      chain.frozen = true;
    }
  } catch (err) {
    await job.earlyFail();
    throw err;
  }
  job.start();
  return job;
}

/**
 * mirror_exit_common after the job's run: the chain down to the target
 * thaws (active commit), the job lets go of the target,
 * the filter stops passing permissions down, the target gets its backing
 * chain (drive-mirror), a completed job puts the target in the place of
 * the source (or of `replaces`), and the filter leaves the graph.
 */
async function finishMirror(o: MirrorStartOptions, job: MirrorJob, targetBackend: BlockBackend, chain: { frozen: boolean }, abort: boolean): Promise<void> {
  const filter = job.filter;
  if (chain.frozen) unfreezeChain(filter, o.target);
  chain.frozen = false;
  await targetBackend.remove();
  filter.stop = true;
  await GraphTransaction.run((tran) => refreshPerms([o.source], tran)).catch(() => undefined);
  let failure: Error | undefined;
  if (!abort && o.backingMode === 'source') {
    const backing = o.noneMode ? o.source : o.base;
    const unfiltered = skipFilters(o.target);
    if (cowChild(unfiltered) !== backing) {
      await GraphTransaction.run((tran) => setBacking(tran, unfiltered, backing)).catch(() => {
        failure = new BlockError('PERMISSION', 'Operation not permitted', { errno: 'EPERM' });
      });
    }
  } else if (!abort && o.backingMode === 'open') {
    // QEMU reports the failure, goes on (the pivot too) and fails the job with bdrv_open_backing_file's EINVAL.
    await o.openBacking?.(skipFilters(o.target)).catch(() => {
      failure = new BlockError('INVALID_ARGUMENT', 'Invalid argument', { errno: 'EINVAL' });
    });
  }
  if (job.shouldComplete && !abort) {
    const toReplace = job.replaced;
    if (toReplace.readOnly !== o.target.readOnly) await reopenSetReadOnly({ graph: o.graph, order: insertionOrder }, o.target, toReplace.readOnly).catch(() => undefined);
    if (canReplace(o.source, toReplace)) {
      await GraphTransaction.run((tran) => replaceNode(tran, toReplace, o.target)).catch(() => {
        failure = new BlockError('PERMISSION', 'Operation not permitted', { errno: 'EPERM' });
      });
    } else {
      failure = fail(
        `Can no longer replace '${toReplace.nodeName}' by '${o.target.nodeName}', because it can no longer be guaranteed that doing so would not lead to an abrupt change of visible data`,
      );
    }
  }
  await job.nodes.removeAll();
  await o.graph.removeFilter(filter);
  // The job's own references go (bdrv_unref of to_replace and src): a node the pivot left without users is deleted.
  if (job.replaced !== o.source) await o.graph.release(job.replaced);
  await o.graph.release(o.source);
  if (failure) throw failure;
}
