import { BlockError } from '../../image/errors.js';
import { PERM_ALL } from '../../image/perm.js';
import type { NodeChild, PermPair } from '../child.js';
import type { NamePolicy } from '../filename.js';
import type { BlockNode } from '../node.js';
import { PassThroughFilter } from './filter-node.js';

/** Named by the node it sits on (bdrv_commit_top_refresh_filename). */
const COMMIT_TOP_NAMING: NamePolicy = {
  protocol: false,
  strong: [],
  exactName: (node, _options, names) => {
    const below = node.child('backing');
    return below ? names.get(below)!.filename : '';
  },
};

const notSupported = () => new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' });

/**
 * The `commit_top` filter a commit job puts above the top of the range it
 * commits (block/commit.c bdrv_commit_top): its backing child is that
 * node. It gives its parents consistent reads without asking them of the
 * chain below (which the job is rewriting) and lets the job write the
 * chain: it takes nothing and shares everything. It never joins a frozen
 * chain, so the job can always take it out again. Read-only, reads only.
 */
export class CommitTopNode extends PassThroughFilter {
  readonly driver = 'commit_top';

  /** Not linked yet: bdrv_append gives it its backing child. */
  constructor(name: string) {
    super(name, true);
    this.neverFreeze = true;
  }

  protected get filtered(): BlockNode {
    const b = this.child('backing');
    if (!b) throw new BlockError('IO', 'commit_top has no backing node', { errno: 'ENOMEDIUM' });
    return b;
  }
  override size(): number {
    return this.child('backing')?.size() ?? 0;
  }
  override get namePolicy(): NamePolicy {
    return COMMIT_TOP_NAMING;
  }
  override childPerm(_c: NodeChild, _perm: number, _shared: number): PermPair {
    return { perm: 0, shared: PERM_ALL };
  }

  protected override doWrite(): Promise<void> {
    return Promise.reject(notSupported());
  }
  protected override doWriteZeroes(): Promise<void> {
    return Promise.reject(notSupported());
  }
  protected override doDiscard(): Promise<void> {
    return Promise.reject(notSupported());
  }
  /** Its link takes no write permission, so QEMU's flush does not reach the node below. */
  protected override async doFlush(): Promise<void> {}
}
