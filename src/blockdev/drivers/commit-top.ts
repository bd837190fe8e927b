import { BlockError } from '../../image/errors.js';
import type { Extent } from '../../image/types.js';
import { PERM_ALL } from '../../image/perm.js';
import type { NodeChild, PermPair } from '../child.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type StatusOptions } from '../node.js';
import { filterImageInfo } from './filter-info.js';

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
export class CommitTopNode extends BlockNode {
  readonly driver = 'commit_top';

  /** Not linked yet: bdrv_append gives it its backing child. */
  constructor(name: string) {
    super(name, true);
    this.neverFreeze = true;
  }

  private get below(): BlockNode {
    const b = this.child('backing');
    if (!b) throw new BlockError('IO', 'commit_top has no backing node', { errno: 'ENOMEDIUM' });
    return b;
  }

  override get isFilter(): boolean {
    return true;
  }
  override get namePolicy(): NamePolicy {
    return COMMIT_TOP_NAMING;
  }
  override childPerm(_c: NodeChild, _perm: number, _shared: number): PermPair {
    return { perm: 0, shared: PERM_ALL };
  }

  size(): number {
    return this.child('backing')?.size() ?? 0;
  }
  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.below.read(offset, length);
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.below.readInto(buf, offset);
  }
  protected doWrite(): Promise<void> {
    return Promise.reject(notSupported());
  }
  protected doWriteZeroes(): Promise<void> {
    return Promise.reject(notSupported());
  }
  protected doDiscard(): Promise<void> {
    return Promise.reject(notSupported());
  }
  /** Its link takes no write permission, so QEMU's flush does not reach the node below. */
  protected async doFlush(): Promise<void> {}
  blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    return this.below.blockStatus(offset, length, opts);
  }
  imageInfo(): Promise<NodeImageInfo> {
    return filterImageInfo('commit_top', this.size(), this.below);
  }
  protected async doClose(): Promise<void> {}
}
