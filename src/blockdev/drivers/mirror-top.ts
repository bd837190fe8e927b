import { PERM_ALL, PERM_CONSISTENT_READ, PERM_WRITE } from '../../image/perm.js';
import { defaultChildPerms, type NodeChild, type PermPair } from '../child.js';
import type { NamePolicy } from '../filename.js';
import type { BlockNode, WriteFlags, ZeroFlags } from '../node.js';
import { PassThroughFilter } from './filter-node.js';
import { type ReopenPlan, writableAfter } from '../permissions.js';

/** Named by the node it filters (bdrv_mirror_top_refresh_filename). */
const MIRROR_TOP_NAMING: NamePolicy = {
  protocol: false,
  strong: [],
  exactName: (node, _options, names) => {
    const below = node.child('backing');
    return below ? names.get(below)!.filename : '';
  },
};

/** A guest write that went through to the source, for a write-blocking mirror to copy to its target at once. */
export interface ActiveWrite {
  kind: 'write' | 'zero' | 'discard';
  offset: number;
  length: number;
  data?: Uint8Array;
  mayUnmap?: boolean;
}

/** What the filter needs of its job while one runs. */
export interface MirrorTopJob {
  /** copy-mode write-blocking (and the job neither failed nor cancelled): the write is copied before it completes. */
  copiesActively(): boolean;
  activeWrite(w: ActiveWrite): Promise<void>;
}

/**
 * The `mirror_top` filter a mirror (or active commit) job puts above its
 * source (block/mirror.c bdrv_mirror_top): its only child is `backing`,
 * requests pass through, and in write-blocking mode each write is copied
 * to the target before it completes. For a commit it neither needs a
 * consistent read of the chain nor keeps others from writing it, since
 * the base is written below it (bdrv_mirror_top_child_perm).
 */
export class MirrorTopNode extends PassThroughFilter {
  readonly driver = 'mirror_top';
  job: MirrorTopJob | undefined;
  /** The job is ending: the filter forwards no permissions to the source any more. */
  stop = false;

  constructor(
    name: string,
    private readonly isCommit: boolean,
    private readonly sourceSize: () => number,
  ) {
    // Opened read-write (BDRV_O_RDWR), with its child attached by bdrv_append.
    super(name, false, []);
    // So that the job can always take it out again: no frozen chain may hold it.
    this.neverFreeze = true;
  }

  protected get filtered(): BlockNode {
    const s = this.child('backing');
    if (!s) throw new Error('mirror_top without its source');
    return s;
  }

  override size(): number {
    return this.child('backing')?.size() ?? this.sourceSize();
  }
  override get namePolicy(): NamePolicy {
    return MIRROR_TOP_NAMING;
  }

  override childPerm(c: NodeChild, perm: number, shared: number, plan?: ReopenPlan): PermPair {
    if (this.stop) return { perm: 0, shared: PERM_ALL };
    const p = defaultChildPerms(c.role, writableAfter(this, plan), perm, shared);
    if (this.isCommit) {
      p.perm &= ~PERM_CONSISTENT_READ;
      p.shared |= PERM_WRITE;
    }
    return p;
  }

  protected override async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    // The guest may change its buffer meanwhile, but source and target must get the same bytes (bounce buffer).
    const copy = this.job?.copiesActively() ? data.slice() : undefined;
    await this.filtered.write(offset, copy ?? data, flags);
    if (copy) await this.job!.activeWrite({ kind: 'write', offset, length: data.length, data: copy });
  }
  protected override async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    const active = this.job?.copiesActively() ?? false;
    await this.filtered.writeZeroes(offset, length, flags);
    if (active) await this.job!.activeWrite({ kind: 'zero', offset, length, mayUnmap: flags.mayUnmap ?? false });
  }
  protected override async doDiscard(offset: number, length: number): Promise<void> {
    const active = this.job?.copiesActively() ?? false;
    await this.filtered.discard(offset, length);
    if (active) await this.job!.activeWrite({ kind: 'discard', offset, length });
  }
  protected override async doFlush(): Promise<void> {
    // Also after a failed append, before the source is linked (bdrv_mirror_top_flush).
    await this.child('backing')?.flush();
  }
}
