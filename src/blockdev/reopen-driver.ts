import type { BlockNode } from './node.js';
import type { Options } from './options.js';

/**
 * A reopen of one node as its driver sees it (QEMU's BDRVReopenState): the
 * new options and open flags. The driver takes the options it handles out
 * of `options` (putting back, as text, those it cannot change, so that the
 * generic comparison refuses a change to them).
 */
export interface ReopenState {
  readonly node: BlockNode;
  readonly options: Options;
  readonly readOnly: boolean;
  readonly autoReadOnly: boolean;
  /** BDRV_O_UNMAP after the reopen (discard=unmap). */
  readonly unmap: boolean;
}

/**
 * What a driver staged for a reopen (the reopen state's opaque part):
 * exactly one of commit and abort follows. commit runs before the new
 * permissions are in force, commitPost after them (bdrv_reopen_commit,
 * drv->bdrv_reopen_commit_post): a qcow2 going read-write can write to
 * its file only then.
 */
export interface StagedReopen {
  commit?(): void | Promise<void>;
  commitPost?(): void | Promise<void>;
  abort?(): void | Promise<void>;
}
