import { BlockError } from '../image/errors.js';
import type { NodeChild } from './child.js';
import { filteredChild } from './chain.js';
import { dropFilter, replaceChildNode, replaceNode } from './graph-edit.js';
import { GraphTransaction, withGraphLock } from './graph-transaction.js';
import type { BlockNode } from './node.js';
import type { BlockNodeEvent } from './node-events.js';
import { refreshPerms } from './permissions.js';
import { type Clock, RealClock } from './clock.js';
import { ThrottleGroups } from './throttle/group.js';
import { drainIoLimits } from './throttle/io-limits.js';
import { FaultRegistry } from './faults/registry.js';
import { MonitorBackends } from './monitor-backends.js';

/** QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
const WELL_FORMED = /^[A-Za-z][A-Za-z0-9._-]*$/;
/** node_name is a char[32] in QEMU. */
const MAX_NAME = 31;

/**
 * The node-name registry (block.c's graph_bdrv_states and blockdev.c's
 * monitor-owned list): names validated and generated as QEMU does, nodes
 * listed newest first like query-named-block-nodes, deletion refused for
 * nodes in use or not added by the monitor, with QEMU's messages.
 */
export class BlockGraph {
  /** The clock throttling times requests on (the daemon's job clock, virtual or real). */
  clock: Clock = new RealClock();
  /** The throttle groups that exist (made by throttle-group objects, joined by throttle nodes). */
  readonly throttleGroups = new ThrottleGroups(() => this.clock);
  /** A secret object's bytes by id (qcrypto_secret_lookup), for encrypted images; throws QEMU's error for a missing one. */
  secretBytes: (id: string) => Uint8Array = (id) => {
    throw new BlockError('NOT_FOUND', `No secret with id '${id}'`);
  };
  /** Legacy AES-encrypted qcow2 is refused, as QEMU's system emulators refuse it (its block driver whitelist); the daemon and the tools take it. */
  refuseAesEncryption = false;
  /** Faults armed on nodes and QMP commands (blockemu's fault-add); their latencies run on the graph's clock. */
  readonly faults = new FaultRegistry(() => this.clock);
  private readonly nodes = new Map<string, BlockNode>();
  /** The machine's BlockBackends (`blockemu system`); none in the storage daemon. Their names and node names share one namespace. */
  readonly backends = new MonitorBackends((name) => this.nodes.has(name));
  /** Nodes added by blockdev-add (or --blockdev) themselves, not as inline children. */
  private readonly monitorOwned = new Set<string>();
  private generated = 0;
  /** When each name was given out: nodes are listed by it, as QEMU lists them by when they got their names. */
  private readonly rank = new Map<string, number>();
  private seq = 0;
  /** Where the nodes' own events go (the daemon's monitors); a node joins when it is added. Without a listener, QEMU's lines still reach stderr. */
  private readonly sink = (e: BlockNodeEvent) => {
    if (this.onEvent) this.onEvent(e);
    else if (e.kind === 'error-report') process.stderr.write(`${e.message}\n`);
    else if (e.kind === 'debug-print') process.stdout.write(e.text);
  };
  onEvent: ((e: BlockNodeEvent) => void) | undefined;
  /**
   * Nodes opened now are inactive and devices attached now take no
   * permissions: the machine waits for an incoming migration (QEMU's
   * runstate_check(RUN_STATE_INMIGRATE) in blockdev_init and blk_attach_dev).
   */
  openInactive = false;

  /** Validates a user-given node name, or generates one ("#block" + counter + two digits). */
  assignName(name: string | undefined): string {
    if (name === undefined) {
      const n = this.generated++;
      // QEMU appends two random digits; ours are derived from the counter so runs are reproducible.
      name = `#block${n}${String((n * 37 + 13) % 100).padStart(2, '0')}`;
    } else {
      if (!WELL_FORMED.test(name)) throw new BlockError('INVALID_ARGUMENT', `Invalid node-name: '${name}'`);
      if (this.backends.byName(name)) throw new BlockError('INVALID_ARGUMENT', `node-name=${name} is conflicting with a device id`);
      if (this.nodes.has(name)) throw new BlockError('INVALID_ARGUMENT', `Duplicate nodes with node-name='${name}'`);
      if (name.length > MAX_NAME) throw new BlockError('INVALID_ARGUMENT', 'Node name too long');
    }
    this.rank.set(name, this.seq++);
    return name;
  }

  add(node: BlockNode, monitorOwned: boolean): void {
    if (this.nodes.has(node.nodeName)) throw new BlockError('INVALID_ARGUMENT', `Duplicate nodes with node-name='${node.nodeName}'`);
    if (!this.rank.has(node.nodeName)) this.rank.set(node.nodeName, this.seq++);
    this.nodes.set(node.nodeName, node);
    node.eventSink = this.sink;
    if (monitorOwned) this.monitorOwned.add(node.nodeName);
  }

  /** The monitor lets go of a node (its users keep it, and it goes with the last of them). */
  disown(node: BlockNode): void {
    this.monitorOwned.delete(node.nodeName);
  }

  /** Unregisters a node without closing it (undoing an add whose node its creator closes). */
  forget(node: BlockNode): void {
    if (this.nodes.get(node.nodeName) !== node) return;
    this.nodes.delete(node.nodeName);
    this.rank.delete(node.nodeName);
    this.monitorOwned.delete(node.nodeName);
  }

  get(name: string): BlockNode | undefined {
    return this.nodes.get(name);
  }

  /** Looks a node up as commands taking a `device` do (bdrv_lookup_bs(name, name)): a BlockBackend's root first, then a node name. */
  find(name: string): BlockNode {
    const n = this.backends.rootOf(name) ?? this.nodes.get(name);
    if (!n) throw new BlockError('NOT_FOUND', `Cannot find device='${name}' nor node-name='${name}'`);
    return n;
  }

  /**
   * bdrv_lookup_bs(device, nodeName): a BlockBackend named `device` gives
   * its root ("has no medium" when empty), else the node `nodeName`.
   */
  lookup(device: string | undefined, nodeName: string | undefined): BlockNode {
    const viaDevice = device !== undefined ? this.backends.rootOf(device) : undefined;
    const n = viaDevice ?? (nodeName !== undefined ? this.nodes.get(nodeName) : undefined);
    if (!n) throw new BlockError('NOT_FOUND', `Cannot find device='${device ?? ''}' nor node-name='${nodeName ?? ''}'`);
    return n;
  }

  /** Looks a node up by node name only (bdrv_lookup_bs(NULL, name)), as arguments naming a node do. */
  findNode(name: string): BlockNode {
    const n = this.nodes.get(name);
    if (!n) throw new BlockError('NOT_FOUND', `Cannot find device='' nor node-name='${name}'`);
    return n;
  }

  /** Every node, the one named last first. */
  list(): BlockNode[] {
    const rank = (n: BlockNode) => this.rank.get(n.nodeName) ?? -1;
    return [...this.nodes.values()].sort((a, b) => rank(b) - rank(a));
  }

  /** The nodes the monitor added (-blockdev, blockdev-add), in the order they came (QEMU's monitor_bdrv_states). */
  monitorOwnedNodes(): BlockNode[] {
    return [...this.monitorOwned].map((n) => this.nodes.get(n)).filter((n): n is BlockNode => n !== undefined);
  }

  /** Nodes added by the monitor that no other node uses (query-block's devices in the storage daemon have none). */
  roots(): BlockNode[] {
    return this.list().filter((n) => this.monitorOwned.has(n.nodeName) && !n.inUse);
  }

  /**
   * blockdev-del (qmp_blockdev_del): refused, in QEMU's order and words,
   * for a node a BlockBackend uses, a node blocked for deletion (by a job,
   * or as an overlay's backing node), a node the monitor did not add, and a
   * node still referenced; otherwise it is closed with the inline children
   * it brought along.
   */
  async delete(name: string): Promise<void> {
    const node = this.nodes.get(name);
    if (!node) throw new BlockError('NOT_FOUND', `Failed to find node with node-name='${name}'`);
    if (node.parents.some((c) => (c.owner as { isBackend?: boolean }).isBackend)) throw new BlockError('INVALID_ARGUMENT', `Node ${name} is in use`);
    node.blockers.check(name, 'drive-del');
    if (!this.monitorOwned.has(name)) throw new BlockError('INVALID_ARGUMENT', `Node ${name} is not owned by the monitor`);
    if (node.inUse) throw new BlockError('INVALID_ARGUMENT', `Block device ${name} is in use`);
    await this.closeTree(node);
  }

  /**
   * Closes and forgets a node whatever its owner (undoing a failed
   * blockdev-add, dropping drive-backup's target), with the inline children
   * nobody else uses.
   */
  async discard(node: BlockNode): Promise<void> {
    await this.closeTree(node);
  }

  /**
   * A node that lost a link (bdrv_unref: after a reopen replaced a child,
   * or a job let go of it): closed and forgotten, with the inline children
   * nobody else uses, once nothing uses it and the monitor did not add it.
   */
  async release(node: BlockNode): Promise<void> {
    if (node.isClosed || node.inUse || this.monitorOwned.has(node.nodeName) || this.nodes.get(node.nodeName) !== node) return;
    await this.closeTree(node);
  }

  /**
   * bdrv_replace_node: every link to `from` (but those `to` reaches itself,
   * and jobs') goes to `to` instead, with the permissions checked. Returns
   * what moves exactly those links back.
   */
  async moveParents(from: BlockNode, to: BlockNode): Promise<() => Promise<void>> {
    const moved = await GraphTransaction.run((tran) => replaceNode(tran, from, to));
    return () => this.moveBack(moved, from);
  }

  /** Points links back at `node` (undoing moveParents); their permissions held there before, so a failure is only logged by QEMU and ignored here. */
  async moveBack(links: readonly NodeChild[], node: BlockNode): Promise<void> {
    await withGraphLock(async () => {
      const tran = new GraphTransaction();
      const others = new Set<BlockNode>();
      for (const c of links) {
        others.add(c.node);
        await replaceChildNode(tran, c, node);
      }
      await refreshPerms([node, ...others], tran).catch(() => undefined);
      await tran.commit();
    });
  }

  /** Takes a filter out of the graph (a job's end): its parents go back to its filtered child, the node goes, its children stay as they are. */
  async removeFilter(node: BlockNode): Promise<void> {
    const below = filteredChild(node);
    if (below) await this.moveParents(node, below).catch(() => undefined);
    await this.closeTree(node, false);
  }

  /**
   * bdrv_drop_filter, then the filter goes: its parents use the node below
   * it, which it lets go of; refused (and nothing changed) where a frozen
   * link would have to move.
   */
  async dropFilter(filter: BlockNode): Promise<void> {
    await GraphTransaction.run((tran) => dropFilter(tran, filter));
    await this.closeTree(filter, false);
  }

  /**
   * Closes a node and forgets it, then each child: one nobody else uses
   * and the monitor did not add goes too (when `children`); the others
   * stay, with the permissions they no longer need given up.
   */
  private async closeTree(node: BlockNode, children = true): Promise<void> {
    const kids = node.children();
    this.faults.dropNode(node);
    await node.close();
    this.forget(node);
    for (const child of new Set(kids)) {
      if (child.isClosed) continue;
      if (children && !this.monitorOwned.has(child.nodeName) && !child.inUse && this.nodes.get(child.nodeName) === child) await this.closeTree(child);
      else await GraphTransaction.run((tran) => refreshPerms([child], tran)).catch(() => undefined);
    }
  }

  /**
   * bdrv_drain_all_begin at shutdown, before the jobs are cancelled: a
   * node that holds requests back (a throttle node) lets them go, so a job
   * reading through a throttle group of 4 KiB/s ends at once (iotest 218).
   */
  /** Every request held by injection goes on: stalls released, blkdebug's breakpoints gone (a shutdown waits on requests). */
  releaseHeldRequests(): void {
    this.faults.clear();
    for (const n of this.list()) n.releaseHeldRequests();
  }

  drainAllForShutdown(): void {
    for (const n of this.list()) n.drainForShutdown();
    // A throttled BlockBackend's waiting requests (HMP qemu-io's aio_read) go too.
    for (const b of this.backends.list()) drainIoLimits(b.blk);
  }

  /**
   * Flushes and closes every node, parents before children (daemon
   * shutdown, bdrv_close_all): whatever one node does, the others are
   * closed (a node's close reports its failures and resolves). Nodes still
   * referenced once no parent is left (a reference nothing will drop) are
   * closed too, so no file stays open.
   */
  async closeAll(): Promise<void> {
    for (;;) {
      const all = this.list();
      if (all.length === 0) break;
      const top = all.filter((n) => !n.inUse);
      for (const n of top.length > 0 ? top : all) {
        this.faults.dropNode(n);
        // bdrv_close flushes first and ignores the outcome.
        await n.flush().catch(() => undefined);
        await n.close();
        this.forget(n);
      }
    }
  }
}
