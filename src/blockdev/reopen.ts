import { strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import { filteredChild } from './chain.js';
import type { BlockGraph } from './graph.js';
import { fileLink, reaches, setFileOrBackingNoPerm } from './graph-edit.js';
import { GraphTransaction, withGraphLock } from './graph-transaction.js';
import type { BlockNode } from './node.js';
import type { BlockdevSpec } from './open.js';
import { absorb, flattenQdict, type KeyOrder, type Options, putBack, qobjectEqual } from './options.js';
import { refreshPerms } from './permissions.js';
import { type ReopenEntry, ReopenQueue } from './reopen-queue.js';

/**
 * Reopening nodes with new options, atomically (block.c's
 * bdrv_reopen_multiple and its helpers): each node of the queue is
 * prepared — generic options, then the driver's, then its backing and
 * file links, then every other option compared with what the node has —
 * then the permissions of all of them are checked together; any failure
 * undoes everything, otherwise the drivers commit, the new permissions
 * (and file descriptors, and lock bytes) take effect, and children that
 * nothing uses any more are closed.
 */

/** What a reopen needs of its surroundings. */
export interface ReopenContext {
  readonly graph: BlockGraph;
  /** QEMU's QDict order: the first option in it names a refusal. */
  readonly order: KeyOrder;
}

/** Options every driver leaves to the generic code, which a reopen may therefore leave out (bdrv_reset_options_allowed). */
const COMMON = new Set(['node-name', 'discard', 'cache.direct', 'cache.no-flush', 'read-only', 'auto-read-only', 'detect-zeroes']);
/** The generic options (bdrv_runtime_opts); what is left of them after the reopen reads them goes back for comparison. */
const GENERIC = ['node-name', 'driver', 'cache.direct', 'cache.no-flush', 'read-only', 'auto-read-only', 'detect-zeroes', 'discard', 'force-share'];
const DETECT_ZEROES = ['off', 'on', 'unmap'] as const;

const fail = (msg: string) => new BlockError('INVALID_ARGUMENT', msg);

/**
 * blockdev-reopen (qmp_blockdev_reopen): every entry names an existing
 * node, whose options become the entry's — an option left out goes back
 * to its default or, if it cannot, the reopen is refused; all entries
 * succeed or none does. `drain` quiesces each node first (jobs using it
 * pause for a moment, as QEMU's drained section makes them).
 */
export async function blockdevReopen(ctx: ReopenContext, specs: readonly BlockdevSpec[], drain: (node: BlockNode) => void): Promise<void> {
  await withGraphLock(async () => {
    const queue = new ReopenQueue();
    for (const spec of specs) {
      const name = spec['node-name'];
      if (typeof name !== 'string') throw fail('node-name not specified');
      const node = ctx.graph.get(name);
      if (!node) throw fail(`Failed to find node with node-name='${name}'`);
      drain(node);
      queue.add(node, flattenQdict(spec), false);
    }
    await reopenMultiple(ctx, queue);
  });
}

/**
 * bdrv_reopen_set_read_only: `node` (and the children it opened that do
 * not say otherwise) becomes read-only or read-write, keeping its other
 * options — a snapshot's old top, change-backing-file's image.
 */
export function reopenSetReadOnly(ctx: ReopenContext, node: BlockNode, readOnly: boolean): Promise<void> {
  return withGraphLock(async () => {
    const queue = new ReopenQueue();
    queue.add(node, { 'read-only': readOnly }, true);
    await reopenMultiple(ctx, queue);
  });
}

/**
 * bdrv_reopen(node, options, keep_old_opts=true), as qemu-io's `reopen`
 * calls it: the node (and the children it opened) keep every option but
 * those given (flat, "file.node-name" for a child's).
 */
export function reopenKeepingOptions(ctx: ReopenContext, node: BlockNode, options: Options): Promise<void> {
  // update_flags_from_options: the flag options are booleans, in QemuOpts' words when given as text.
  for (const key of ['read-only', 'cache.no-flush', 'cache.direct', 'auto-read-only']) {
    const v = options[key];
    if (typeof v === 'string' && !['on', 'off', 'yes', 'no', 'true', 'false', 'y', 'n'].includes(v)) {
      return Promise.reject(fail(`Parameter '${key}' expects 'on' or 'off'`));
    }
  }
  return withGraphLock(async () => {
    const queue = new ReopenQueue();
    queue.add(node, options, true);
    await reopenMultiple(ctx, queue);
  });
}

/** bdrv_reopen_multiple: flush, prepare all, check permissions; then commit all, or undo all. */
async function reopenMultiple(ctx: ReopenContext, queue: ReopenQueue): Promise<void> {
  for (const e of queue.entries) {
    try {
      await e.node.flush();
    } catch (err) {
      throw new BlockError('IO', `Error flushing drive: ${strerror(err instanceof BlockError && err.errno ? err.errno : 'EIO')}`, { cause: err });
    }
  }
  const tran = new GraphTransaction();
  const prepared: ReopenEntry[] = [];
  try {
    for (const e of queue.entries) {
      await prepare(ctx, e, tran);
      prepared.push(e);
    }
    // The old children too: they lose a parent, so they may give up permissions (and lock bytes).
    const roots = queue.entries.flatMap((e) => [e.node, ...(e.oldBacking ? [e.oldBacking] : []), ...(e.oldFile ? [e.oldFile] : [])]);
    await refreshPerms(roots, tran, queue.plan);
  } catch (err) {
    await tran.abort();
    for (const e of prepared) await e.staged?.abort?.();
    throw err;
  }
  // Children's commits first (they come after their parents in the queue): a qcow2 writes to its file only once it is writable.
  const reversed = [...queue.entries].reverse();
  for (const e of reversed) await commit(e);
  await tran.commit();
  for (const e of reversed) await e.staged?.commitPost?.();
  for (const e of queue.entries) {
    for (const old of [e.oldBacking, e.oldFile]) if (old) await ctx.graph.release(old);
  }
}

/**
 * bdrv_reopen_prepare for one node; on failure the driver's staged state
 * is dropped here, the links changed so far by `tran`'s abort.
 */
async function prepare(ctx: ReopenContext, e: ReopenEntry, tran: GraphTransaction): Promise<void> {
  const node = e.node;
  const options: Options = { ...e.options };
  const generic = absorb(options, GENERIC);
  let unmap = e.unmap;
  const discard = generic.get('discard');
  if (discard !== undefined) {
    if (discard === 'off' || discard === 'ignore') unmap = false;
    else if (discard === 'on' || discard === 'unmap') unmap = true;
    else throw fail('Invalid discard option');
  }
  const detectZeroes = (generic.get('detect-zeroes') ?? 'off') as (typeof DETECT_ZEROES)[number];
  if (!DETECT_ZEROES.includes(detectZeroes)) throw fail(`Parameter 'detect-zeroes' does not accept value '${detectZeroes}'`);
  if (detectZeroes === 'unmap' && !unmap) throw fail('setting detect-zeroes to unmap is not allowed without setting discard operation to unmap');
  for (const read of ['discard', 'detect-zeroes', 'cache.direct', 'cache.no-flush', 'read-only', 'auto-read-only']) generic.delete(read);
  // node-name, driver and force-share cannot change: back they go, as text, to be compared.
  putBack(options, generic);
  if (!node.supportsReopen) throw fail(`Block format '${node.driver}' used by node '${node.nodeName}' does not support reopening files`);
  checkResetAllowed(ctx, node, options);
  const staged = await node.prepareReopen({ node, options, readOnly: e.readOnly, autoReadOnly: e.autoReadOnly, unmap });
  try {
    // A node with a backing file must name it (or null): what leaving it out should mean is unclear.
    if (node.supportsBacking && e.backingMissing && (node.child('backing') || node.autoBackingFile !== '')) throw fail(`backing is missing for '${node.nodeName}'`);
    await replaceChild(ctx, e, options, true, tran);
    delete options['backing'];
    await replaceChild(ctx, e, options, false, tran);
    delete options['file'];
    checkUnchanged(ctx, node, options);
  } catch (err) {
    await staged.abort?.();
    throw err;
  }
  e.staged = staged;
  e.detectZeroes = detectZeroes;
  e.unmap = unmap;
}

/** bdrv_reset_options_allowed: an option the node has may be left out only if the driver can reset it. */
function checkResetAllowed(ctx: ReopenContext, node: BlockNode, options: Options): void {
  const mutable = new Set(node.mutableOptions);
  for (const key of ctx.order(Object.keys(node.options))) {
    if (!(key in options) && !COMMON.has(key) && !mutable.has(key)) throw fail(`Option '${key}' cannot be reset to its default value`);
  }
}

/**
 * What no one took must equal what the node has (a child named by the
 * node it already is passes): the rest cannot change.
 */
function checkUnchanged(ctx: ReopenContext, node: BlockNode, options: Options): void {
  for (const key of ctx.order(Object.keys(options))) {
    const value = options[key];
    if (typeof value === 'string' && node.childList().some((c) => c.name === key && c.node.nodeName === value)) continue;
    if (!qobjectEqual(value, node.options[key])) throw fail(`Cannot change the option '${key}'`);
  }
}

/**
 * bdrv_reopen_parse_file_or_backing: `backing` (a node name, or null) or
 * `file` (a node name) names the node's new child. The same child, or the
 * node below an implicit filter there, changes nothing; a cycle, an
 * implicit child and a filter's missing child are refused.
 */
async function replaceChild(ctx: ReopenContext, e: ReopenEntry, options: Options, isBacking: boolean, tran: GraphTransaction): Promise<void> {
  const node = e.node;
  const name = isBacking ? 'backing' : 'file';
  if (!(name in options)) return;
  const value = options[name];
  const old = isBacking ? node.child('backing') : fileLink(node)?.node;
  let next: BlockNode | undefined;
  if (value !== null) {
    const ref = String(value);
    next = ctx.graph.get(ref);
    if (!next) throw fail(`Cannot find device='' nor node-name='${ref}'`);
    if (reaches(next, node)) throw fail(`Making '${ref}' a ${name} child of '${node.nodeName}' would create a cycle`);
  }
  if (old === next) return;
  if (old) {
    let below: BlockNode | undefined = old;
    while (below?.implicit) below = filteredChild(below);
    if (below === next) return;
    if (old.implicit) throw new BlockError('PERMISSION', `Cannot replace implicit ${name} child of ${node.nodeName}`);
  }
  if (node.isFilter && !old) throw fail(`'${node.nodeName}' is a ${node.driver} filter node that does not support a ${name} child`);
  if (isBacking) e.oldBacking = old;
  else e.oldFile = old;
  await setFileOrBackingNoPerm(tran, node, next, isBacking);
}

/** bdrv_reopen_commit: the driver's part, then the node's new options and flags; child references leave its options. */
async function commit(e: ReopenEntry): Promise<void> {
  const node = e.node;
  await e.staged?.commit?.();
  for (const o of [e.options, e.explicit]) {
    for (const c of node.childList()) delete o[c.name];
    delete o['backing'];
  }
  node.options = e.options;
  node.explicitOptions = e.explicit;
  node.readOnly = e.readOnly;
  node.settings = { detectZeroes: e.detectZeroes ?? 'off', discard: e.unmap ? 'unmap' : 'ignore', cacheDirect: e.cacheDirect, cacheNoFlush: e.cacheNoFlush };
}

/**
 * Runs `fn` with `node` writable: a read-only node is reopened read-write
 * for it and read-only again after, a failure of that last step ignored
 * (bdrv_backing_update_filename's pattern).
 */
export async function whileWritable<T>(ctx: ReopenContext, node: BlockNode, fn: () => Promise<T>): Promise<T> {
  const ro = node.readOnly;
  if (ro) await reopenSetReadOnly(ctx, node, false);
  try {
    return await fn();
  } finally {
    if (ro) await reopenSetReadOnly(ctx, node, true).catch(() => undefined);
  }
}
