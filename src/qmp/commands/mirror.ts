import { openBackingFile } from '../../blockdev/backing-file.js';
import { unlink } from 'node:fs/promises';
import { canReplace, cowChild, skipFilters } from '../../blockdev/chain.js';
import type { BlockNode } from '../../blockdev/node.js';
import { openBlockdev } from '../../blockdev/open.js';
import type { OnError } from '../../jobs/error-policy.js';
import type { MirrorJob } from '../../jobs/mirror.js';
import { type BackingMode, startMirror } from '../../jobs/mirror-start.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import type { ArgsType } from '../schema/command.js';
import { blockdevMirror, driveMirror } from '../schema/mirror.js';
import { rootNode } from './backing.js';
import { formatName, imageFileOptions, prepareImageFile } from './new-image.js';

const fail = (desc: string) => new QmpError('GenericError', desc);

/** The arguments blockdev-mirror and drive-mirror share (blockdev_mirror_common's). */
type Common = Omit<ArgsType<typeof blockdevMirror>, 'device' | 'target'> & { unmap?: boolean };

/** bdrv_backing_chain_next: the first node below `bs`'s backing link that is not a filter. */
function backingChainNext(bs: BlockNode): BlockNode | undefined {
  const b = cowChild(skipFilters(bs));
  return b ? skipFilters(b) : undefined;
}

/** check_to_replace_node: the node `replaces` names, if a mirror of `bs` may take its place. */
function checkReplaces(ctx: QmpContext, bs: BlockNode, name: string): BlockNode {
  const node = ctx.graph.get(name);
  if (!node) throw fail(`Failed to find node with node-name='${name}'`);
  node.blockers.check(ctx.graph.backends.deviceOrNodeName(node), 'replace');
  if (!canReplace(bs, node)) {
    throw fail(`Cannot replace '${name}' by a node mirrored from '${bs.nodeName}', because it cannot be guaranteed that doing so would not lead to an abrupt change of visible data`);
  }
  return node;
}

/**
 * blockdev_mirror_common and mirror_start: the checks in QEMU's order and
 * words, then the job (mirror_start_job).
 */
async function mirrorCommon(
  ctx: QmpContext,
  bs: BlockNode,
  target: BlockNode,
  a: Common,
  backingMode: BackingMode,
  zeroTarget: boolean,
  afterClean?: () => Promise<void>,
): Promise<MirrorJob> {
  const granularity = a.granularity ?? 0;
  if (granularity !== 0 && (granularity < 512 || granularity > 1048576 * 64)) throw fail("Parameter 'granularity' expects a value in range [512B, 64MB]");
  if (granularity & (granularity - 1)) throw fail("Parameter 'granularity' expects a power of 2");
  bs.blockers.check(ctx.graph.backends.deviceOrNodeName(bs), 'mirror-source');
  target.blockers.check(ctx.graph.backends.deviceOrNodeName(target), 'mirror-target');
  let sync = a.sync;
  if (!backingChainNext(bs) && sync === 'top') sync = 'full';
  if (a.replaces !== undefined) {
    const node = checkReplaces(ctx, bs, a.replaces);
    if (bs.size() !== node.size()) throw fail('cannot replace image with a mirror image of different size');
  }
  if (sync === 'incremental' || sync === 'bitmap') throw fail(`Sync mode '${sync}' not supported`);
  const job = await startMirror({
    graph: ctx.graph,
    listener: ctx.jobEvents,
    checkId: (id) => ctx.jobs.checkId(id),
    id: a['job-id'] ?? ctx.graph.backends.deviceName(bs),
    jobType: 'mirror',
    source: bs,
    target,
    replaces: a.replaces,
    speed: a.speed ?? 0,
    granularity,
    bufSize: Number(a['buf-size'] ?? 0),
    backingMode,
    // mode=existing: the target's own backing chain opens when the job completes (MIRROR_OPEN_BACKING_CHAIN).
    ...(backingMode === 'open' ? { openBacking: (t: BlockNode) => openBackingFile(ctx.graph, t) } : {}),
    zeroTarget,
    onSourceError: (a['on-source-error'] ?? 'report') as OnError,
    onTargetError: (a['on-target-error'] ?? 'report') as OnError,
    unmap: a.unmap ?? true,
    filterNodeName: a['filter-node-name'],
    copyMode: a['copy-mode'] ?? 'background',
    noneMode: sync === 'none',
    base: sync === 'top' ? backingChainNext(bs) : undefined,
    autoFinalize: a['auto-finalize'],
    autoDismiss: a['auto-dismiss'],
    clock: ctx.jobs.clock,
    afterClean,
  });
  ctx.jobs.add(job);
  return job;
}

/** qmp_blockdev_mirror: both nodes exist already; the target's backing chain is left as it is. */
async function blockdevMirrorCmd(ctx: QmpContext, a: ArgsType<typeof blockdevMirror>): Promise<void> {
  const bs = rootNode(ctx, a.device);
  const target = ctx.graph.find(a.target);
  await mirrorCommon(ctx, bs, target, a, 'leave', a.sync === 'full');
}


/**
 * qmp_drive_mirror: the target image is created (unless mode=existing),
 * with the source's backing file for sync=top/none, opened as a node of
 * its own, and mirrored into; the node goes away with the job unless the
 * job put it in the source's place. Unlike QEMU, a target file this
 * command created is removed again when the command fails.
 */
async function driveMirrorCmd(ctx: QmpContext, a: ArgsType<typeof driveMirror>): Promise<void> {
  const bs = rootNode(ctx, a.device);
  bs.blockers.check(ctx.graph.backends.deviceOrNodeName(bs), 'mirror-source');
  const mode = a.mode ?? 'absolute-paths';
  const format = a.format ?? (mode === 'existing' ? undefined : formatName(bs));
  let sync = a.sync;
  let targetBacking = cowChild(skipFilters(bs));
  if (!targetBacking && sync === 'top') sync = 'full';
  if (sync === 'none') targetBacking = bs;
  const size = bs.size();
  if (a.replaces !== undefined && a['node-name'] === undefined) throw fail('a node-name must be provided when replacing a named node of the graph');
  const backingMode: BackingMode = mode === 'absolute-paths' ? 'source' : 'open';
  const { createdFile, driver } = await prepareImageFile(a.target, mode, format, size, sync !== 'full' ? targetBacking : undefined, ctx.printf);
  let target: BlockNode | undefined;
  try {
    // The mirror takes care of copy-on-write through the source's chain: the target is opened without its backing file.
    target = await openBlockdev(
      ctx.graph,
      { driver, ...(a['node-name'] !== undefined ? { 'node-name': a['node-name'] } : {}), ...imageFileOptions(driver, a.target), ...(driver === 'qcow2' ? { backing: null } : {}) },
      false,
    );
    const t = target;
    // bdrv_has_zero_init: a new image reads as zeroes; an existing one may not.
    const zeroTarget = sync === 'full' && mode === 'existing';
    const afterClean = async () => {
      if (!t.inUse && !t.isClosed) await ctx.graph.discard(t);
    };
    await mirrorCommon(ctx, bs, target, { ...a, sync }, backingMode, zeroTarget, afterClean);
  } catch (err) {
    if (target && !target.inUse && !target.isClosed) await ctx.graph.discard(target);
    if (createdFile !== undefined) await unlink(createdFile).catch(() => undefined);
    throw err;
  }
}

export function addMirrorCommands(table: CommandTable<QmpContext>): void {
  table.add(blockdevMirror, (a, ctx) => blockdevMirrorCmd(ctx, a)).add(driveMirror, (a, ctx) => driveMirrorCmd(ctx, a));
}
