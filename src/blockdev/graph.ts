import { BlockError } from '../image/errors.js';
import type { BlockNode } from './node.js';

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
  private readonly nodes = new Map<string, BlockNode>();
  /** Nodes added by blockdev-add (or --blockdev) themselves, not as inline children. */
  private readonly monitorOwned = new Set<string>();
  private generated = 0;

  /** Validates a user-given node name, or generates one ("#block" + counter + two digits). */
  assignName(name: string | undefined): string {
    if (name === undefined) {
      const n = this.generated++;
      // QEMU appends two random digits; ours are derived from the counter so runs are reproducible.
      return `#block${n}${String((n * 37 + 13) % 100).padStart(2, '0')}`;
    }
    if (!WELL_FORMED.test(name)) throw new BlockError('INVALID_ARGUMENT', `Invalid node-name: '${name}'`);
    if (this.nodes.has(name)) throw new BlockError('INVALID_ARGUMENT', `Duplicate nodes with node-name='${name}'`);
    if (name.length > MAX_NAME) throw new BlockError('INVALID_ARGUMENT', 'Node name too long');
    return name;
  }

  add(node: BlockNode, monitorOwned: boolean): void {
    if (this.nodes.has(node.nodeName)) throw new BlockError('INVALID_ARGUMENT', `Duplicate nodes with node-name='${node.nodeName}'`);
    this.nodes.set(node.nodeName, node);
    if (monitorOwned) this.monitorOwned.add(node.nodeName);
  }

  get(name: string): BlockNode | undefined {
    return this.nodes.get(name);
  }

  /** Looks a node up by name, as commands taking a `device`/`node-name` do. */
  find(name: string): BlockNode {
    const n = this.nodes.get(name);
    if (!n) throw new BlockError('NOT_FOUND', `Cannot find device='${name}' nor node-name='${name}'`);
    return n;
  }

  /** Every node, newest first. */
  list(): BlockNode[] {
    return [...this.nodes.values()].reverse();
  }

  /** Nodes added by the monitor that no other node uses (query-block's devices in the storage daemon have none). */
  roots(): BlockNode[] {
    return this.list().filter((n) => this.monitorOwned.has(n.nodeName) && !n.inUse);
  }

  /**
   * blockdev-del: closes a monitor-owned node nobody uses, then the inline
   * children it brought along (monitor-owned children stay).
   */
  async delete(name: string): Promise<void> {
    const node = this.nodes.get(name);
    if (!node) throw new BlockError('NOT_FOUND', `Failed to find node with node-name='${name}'`);
    // An export's BlockBackend on the node (bdrv_has_blk).
    if (node.users.size > 0) throw new BlockError('INVALID_ARGUMENT', `Node ${name} is in use`);
    if (node.busyWith) throw new BlockError('INVALID_ARGUMENT', `Node '${name}' is busy: block device is in use by ${node.busyWith}`);
    // A backing child is op-blocked by its overlay (bdrv_set_backing_hd's backing_blocker).
    const overlay = this.list().find((n) => n.child('backing') === node);
    if (overlay) throw new BlockError('INVALID_ARGUMENT', `Node '${name}' is busy: node is used as backing hd of '${overlay.nodeName}'`);
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
    await node.close();
    if (this.nodes.get(node.nodeName) === node) this.nodes.delete(node.nodeName);
    this.monitorOwned.delete(node.nodeName);
    for (const child of node.children()) {
      if (!this.monitorOwned.has(child.nodeName) && !child.inUse && this.nodes.get(child.nodeName) === child) await this.discard(child);
    }
  }

  /**
   * bdrv_replace_node: every node that uses `from` (but `except`, the new
   * node's own link to it) and every user outside the graph (an export)
   * uses `to` instead. Returns what moves them back, exactly those.
   */
  async moveParents(from: BlockNode, to: BlockNode, except: BlockNode): Promise<() => Promise<void>> {
    // A parent that `to` reaches through its own children stays (should_update_child): moving it would
    // close a loop, e.g. a fleecing overlay backed by the source, which is also the backup filter's target.
    const below = new Set<BlockNode>();
    const walk = (n: BlockNode) => {
      for (const c of n.children()) if (!below.has(c)) below.add(c), walk(c);
    };
    walk(to);
    const moved = this.list().filter((n) => n !== except && n !== to && !below.has(n) && n.children().includes(from));
    for (const n of moved) await n.replaceChild(from, to);
    const users = [...from.users];
    const move = (a: BlockNode, b: BlockNode) => {
      for (const u of users) {
        a.detachUser(u);
        b.attachUser(u);
        u.nodeReplaced(b);
      }
    };
    move(from, to);
    return async () => {
      for (const n of moved) await n.replaceChild(to, from);
      move(to, from);
    };
  }

  /** Takes a filter out of the graph (a job's end): its parents go back to its file child, the node goes, its children stay as they are. */
  async removeFilter(node: BlockNode): Promise<void> {
    const below = node.child('file');
    if (below) await this.moveParents(node, below, below);
    await node.close();
    if (this.nodes.get(node.nodeName) === node) this.nodes.delete(node.nodeName);
    this.monitorOwned.delete(node.nodeName);
  }

  private async closeTree(node: BlockNode): Promise<void> {
    await node.close();
    this.nodes.delete(node.nodeName);
    this.monitorOwned.delete(node.nodeName);
    for (const child of node.children()) {
      if (!this.monitorOwned.has(child.nodeName) && !child.inUse && this.nodes.get(child.nodeName) === child) await this.closeTree(child);
    }
  }

  /**
   * Flushes and closes every node, parents before children (daemon
   * shutdown). A node that fails to close (its last flush meets an I/O
   * error) is reported to `onError` and the others are closed all the same,
   * as QEMU reports "Failed to flush the L2 table cache" and goes on.
   */
  async closeAll(onError?: (node: BlockNode, err: unknown) => void): Promise<void> {
    for (;;) {
      const top = this.list().filter((n) => !n.inUse);
      if (top.length === 0) break;
      for (const n of top) {
        await n.flush().catch(() => undefined);
        await n.close().catch((err: unknown) => onError?.(n, err));
        this.nodes.delete(n.nodeName);
        this.monitorOwned.delete(n.nodeName);
      }
    }
  }
}
