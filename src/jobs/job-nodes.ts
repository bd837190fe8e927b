import { filterOrCowChild } from '../blockdev/chain.js';
import type { ChildOwner, NodeChild } from '../blockdev/child.js';
import { attachChild, detachChild } from '../blockdev/graph-edit.js';
import { GraphTransaction } from '../blockdev/graph-transaction.js';
import type { BlockNode } from '../blockdev/node.js';
import { jobBlocker, type OpBlocker } from '../blockdev/op-blockers.js';
import { PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../image/perm.js';

/**
 * The nodes a block job holds (BlockJob's nodes list): each a link from
 * the job, with the permissions it takes and shares, that stays where it
 * is when another node takes the node's place, and the job's blocker on
 * the node ("block device is in use by block job: backup").
 */
export class JobNodes implements ChildOwner {
  readonly staysAtNode = true;
  private readonly links: NodeChild[] = [];
  private readonly blocker: OpBlocker;

  constructor(
    private readonly jobType: string,
    private readonly jobId: string,
  ) {
    this.blocker = jobBlocker(jobType);
  }

  describe(): string {
    return `${this.jobType} job '${this.jobId}'`;
  }

  /** block_job_add_bdrv: refused with QEMU's words if the node cannot allow the permissions. */
  async add(name: string, node: BlockNode, perm: number, shared: number, tran?: GraphTransaction): Promise<void> {
    const step = async (t: GraphTransaction) => {
      const link = await attachChild(t, this, name, 0, node, { perm, shared });
      this.links.push(link);
      node.blockers.add(this.blocker);
      t.addUndo(() => {
        node.blockers.remove(this.blocker);
        this.links.splice(this.links.indexOf(link), 1);
      });
    };
    await (tran ? step(tran) : GraphTransaction.run(step));
  }

  /**
   * The layers a commit drops (commit_start and, for an active commit,
   * mirror_start_job): from `first` down to just above `base`, each held
   * sharing writes, since base is written below them; from `filteredBase`
   * (the topmost node that is only a filter of base) down, consistent
   * reads too.
   */
  async addIntermediate(first: BlockNode | undefined, base: BlockNode, filteredBase: BlockNode | undefined): Promise<void> {
    let shared = PERM_WRITE_UNCHANGED | PERM_WRITE;
    for (let n = first; n && n !== base; n = filterOrCowChild(n)) {
      if (n === filteredBase) shared |= PERM_CONSISTENT_READ;
      await this.add('intermediate node', n, 0, shared);
    }
  }

  /** The job's links, newest first (job->nodes, which block_job_add_bdrv prepends to). */
  list(): readonly NodeChild[] {
    return [...this.links].reverse();
  }

  has(node: BlockNode): boolean {
    return this.links.some((l) => l.node === node);
  }

  /** block_job_remove_all_bdrv: the links go and the nodes are free again; returns the nodes, newest link first. */
  async removeAll(): Promise<BlockNode[]> {
    const nodes: BlockNode[] = [];
    for (const l of this.links.splice(0).reverse()) {
      l.node.blockers.remove(this.blocker);
      await detachChild(l);
      nodes.push(l.node);
    }
    return nodes;
  }

  /** The link to one node goes (a filter the job takes out before it ends). */
  async remove(node: BlockNode): Promise<void> {
    const i = this.links.findIndex((l) => l.node === node);
    if (i < 0) return;
    const [l] = this.links.splice(i, 1);
    node.blockers.remove(this.blocker);
    await detachChild(l!);
  }
}
