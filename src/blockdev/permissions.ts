import { BlockError } from '../image/errors.js';
import { PERM_ALL, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED, permNames } from '../image/perm.js';
import type { NodeChild, PermPair } from './child.js';
import type { GraphTransaction } from './graph-transaction.js';
import type { BlockNode } from './node.js';

/** Nodes about to be reopened, with their read-only state after the reopen (BlockReopenQueue). */
export type ReopenPlan = ReadonlyMap<BlockNode, { readOnly: boolean }>;

/** Whether a node can be written once the plan is carried out (bdrv_is_writable_after_reopen). */
export function writableAfter(node: BlockNode, plan?: ReopenPlan): boolean {
  if (node.inactive) return false;
  const planned = plan?.get(node);
  return !(planned ? planned.readOnly : node.readOnly);
}

/** bdrv_a_allow_b: whether `a` shares everything `b` takes, as QEMU words a conflict if not. */
function conflict(a: NodeChild, b: NodeChild): BlockError | undefined {
  if ((b.perm & a.shared) === b.perm) return undefined;
  const name = b.node.nodeName;
  return new BlockError(
    'PERMISSION',
    `Permission conflict on node '${name}': permissions '${permNames(b.perm & ~a.shared)}' are both required by ${b.describe()} (uses node '${name}' as '${b.name}' child) and unshared by ${a.describe()} (uses node '${name}' as '${a.name}' child).`,
  );
}

/** bdrv_parent_perms_conflict: every ordered pair of the node's parents, newest first. */
export function parentConflict(node: BlockNode): BlockError | undefined {
  for (const a of node.parents) {
    for (const b of node.parents) {
      if (a === b) continue;
      const err = conflict(a, b);
      if (err) return err;
    }
  }
  return undefined;
}

/**
 * The subtrees of `roots` with every node after all its parents that are
 * in the list (bdrv_topological_dfs: children visited newest first).
 */
export function topologicalOrder(roots: readonly BlockNode[]): BlockNode[] {
  const found = new Set<BlockNode>();
  let list: BlockNode[] = [];
  const dfs = (n: BlockNode): BlockNode[] => {
    if (found.has(n)) return [];
    found.add(n);
    const below: BlockNode[] = [];
    for (const c of n.childList()) below.unshift(...dfs(c.node));
    return [n, ...below];
  };
  for (const r of roots) list = [...dfs(r), ...list];
  return list;
}

/** Sets a link's permissions as a step of `tran` (bdrv_child_set_perm). */
export function setChildPerm(c: NodeChild, p: PermPair, tran: GraphTransaction): void {
  const old = { perm: c.perm, shared: c.shared };
  c.perm = p.perm;
  c.shared = p.shared;
  tran.addUndo(() => {
    c.perm = old.perm;
    c.shared = old.shared;
  });
}

/** The first error of one node's own checks (bdrv_node_refresh_perm before the driver's part). */
function nodeCheck(node: BlockNode, p: PermPair, plan: ReopenPlan | undefined): BlockError | undefined {
  if (p.perm & (PERM_WRITE | PERM_WRITE_UNCHANGED) && !writableAfter(node, plan)) {
    return node.readOnly || node.inactive
      ? new BlockError('READ_ONLY', 'Block node is read-only', { errno: 'EPERM' })
      : new BlockError('READ_ONLY', `Read-only block node '${node.nodeName}' cannot support read-write users`, { errno: 'EPERM' });
  }
  if (p.perm & (PERM_WRITE | PERM_WRITE_UNCHANGED) && !(p.perm & PERM_RESIZE) && node.size() % node.requestAlignment() !== 0) {
    return new BlockError('PERMISSION', "Cannot get 'write' permission without 'resize': Image size is not a multiple of request alignment", { errno: 'EPERM' });
  }
  return undefined;
}

/**
 * bdrv_list_refresh_perms over the subtrees of `roots`: for each node in
 * topological order its parents must not conflict, the node must allow
 * what they take, its driver must agree (a file node takes its lock bytes:
 * the only step that waits, started at once and awaited at the end — a
 * file node has no children, so nothing after it depends on its answer),
 * and its children get the permissions it needs of them. The first failure
 * in list order is thrown; every step is undone by `tran`'s abort.
 */
export async function refreshPerms(roots: readonly BlockNode[], tran: GraphTransaction, plan?: ReopenPlan): Promise<void> {
  const checks: Promise<void>[] = [];
  let failure: BlockError | undefined;
  for (const node of topologicalOrder(roots)) {
    failure = parentConflict(node);
    if (failure) break;
    const cum = node.cumulativePerm();
    failure = nodeCheck(node, cum, plan);
    if (failure) break;
    // An inactive node's driver changes nothing (file-posix leaves its lock bytes as they are): opened inactive it
    // holds none, inactivated it keeps what its last active permissions left it.
    const check = node.inactive ? Promise.resolve() : node.checkPerm(cum.perm, cum.shared);
    // Caught here so that an early failure elsewhere leaves no unhandled rejection; looked at below.
    check.catch(() => undefined);
    checks.push(check);
    if (!node.inactive) {
      tran.addUndo(() => node.abortPerm());
      tran.addCommit(() => {
        const now = node.cumulativePerm();
        return node.commitPerm(now.perm, now.shared);
      });
    }
    for (const c of node.childList()) {
      const want = node.childPerm(c, cum.perm, cum.shared, plan);
      if (c.node.forceShare) want.shared = PERM_ALL;
      // An inactive node lets others write and resize its children (bdrv_default_perms_for_storage/_for_cow).
      if (node.inactive) want.shared |= PERM_WRITE | PERM_RESIZE;
      setChildPerm(c, want, tran);
    }
  }
  // All settled before anything is undone: an abort must not overtake a lock change still under way.
  const results = await Promise.allSettled(checks);
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
  if (failure) throw failure;
}
