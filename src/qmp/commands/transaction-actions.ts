import { unlink } from 'node:fs/promises';
import * as bitmaps from '../../blockdev/bitmap-ops.js';
import { BitmapCheck } from '../../blockdev/dirty-bitmap.js';
import type { BackupJob } from '../../jobs/backup.js';
import type { JobTxn } from '../../jobs/txn.js';
import type { QmpContext } from '../context.js';
import { QmpError } from '../error.js';
import type { Infer } from '../schema/types.js';
import type { BlockdevBackup, DriveBackup } from '../schema/backup.js';
import type { BlockDirtyBitmapAdd, BlockDirtyBitmapMerge } from '../schema/block-core/bitmaps.js';
import type { BlockDirtyBitmap } from '../schema/block-core/common.js';
import type { BlockdevSnapshot, BlockdevSnapshotInternal, BlockdevSnapshotSync } from '../schema/block-core/snapshot-args.js';
import type { TransactionActionKind } from '../schema/transaction.js';
import { cancelPreparedBackup, prepareBlockdevBackup, prepareDriveBackup } from './backup.js';
import { abortSnapshot, commitSnapshot, type PreparedSnapshot, prepareSnapshot, prepareSnapshotSync } from './snapshot.js';
import { abortInternalSnapshot, type PreparedInternalSnapshot, prepareInternalSnapshot } from './internal-snapshot.js';

/**
 * One action of a `transaction` (blockdev.c BlkActionOps): prepare may
 * fail and must leave undone what it did not finish; then exactly one of
 * commit or abort runs (abort also for the action whose prepare failed);
 * clean always runs last.
 */
export interface Action {
  prepare(): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
  clean(): Promise<void>;
}

type Kind = Infer<typeof TransactionActionKind>;
type BitmapArgs = Infer<typeof BlockDirtyBitmap>;
/** The validated `data` of each kind of action. */
interface ActionData {
  abort: Record<string, never>;
  'blockdev-backup': Infer<typeof BlockdevBackup>;
  'drive-backup': Infer<typeof DriveBackup>;
  'block-dirty-bitmap-add': Infer<typeof BlockDirtyBitmapAdd>;
  'block-dirty-bitmap-remove': BitmapArgs;
  'block-dirty-bitmap-clear': BitmapArgs;
  'block-dirty-bitmap-enable': BitmapArgs;
  'block-dirty-bitmap-disable': BitmapArgs;
  'block-dirty-bitmap-merge': Infer<typeof BlockDirtyBitmapMerge>;
  'blockdev-snapshot': Infer<typeof BlockdevSnapshot>;
  'blockdev-snapshot-sync': Infer<typeof BlockdevSnapshotSync>;
  'blockdev-snapshot-internal-sync': Infer<typeof BlockdevSnapshotInternal>;
}
type DataOf<K extends Kind> = ActionData[K];
/** One element of `actions`, after validation. */
export interface ActionRequest {
  type: Kind;
  data: unknown;
}

/** What every action of one transaction shares. */
export interface ActionEnv {
  ctx: QmpContext;
  mode: 'individual' | 'grouped';
  /** The shared job transaction when completion-mode is grouped. */
  txn: JobTxn | undefined;
}

const fail = (desc: string) => new QmpError('GenericError', desc);

/** action_check_completion_mode: only job actions can complete as a group. */
function checkIndividual(env: ActionEnv, kind: Kind): void {
  if (env.mode !== 'individual') throw fail(`Action '${kind}' does not support Transaction property completion-mode = ${env.mode}`);
}

const NOTHING = async (): Promise<void> => {};

/** A job action: the job is created in prepare and started in commit, so none starts unless all prepared. */
function jobAction(create: () => Promise<{ job: BackupJob; createdFile?: string | undefined }>): Action {
  let job: BackupJob | undefined;
  let createdFile: string | undefined;
  return {
    async prepare() {
      ({ job, createdFile } = await create());
    },
    async commit() {
      job!.start();
    },
    async abort() {
      if (job) await cancelPreparedBackup(job);
      // Better than QEMU, which leaves the target it created behind.
      if (createdFile !== undefined) await unlink(createdFile).catch(() => undefined);
    },
    clean: NOTHING,
  };
}

/** An action whose prepare only refuses (after QEMU's own checks, so its errors come first). */
function refusing(check: () => void | Promise<void>, refusal: string): Action {
  return {
    async prepare() {
      await check();
      throw fail(refusal);
    },
    commit: NOTHING,
    abort: NOTHING,
    clean: NOTHING,
  };
}

/** A change made in prepare that abort takes back (the bitmap actions: QEMU's backup copies and saved states). */
function undoable(env: ActionEnv, kind: Kind, change: () => bitmaps.Undo | Promise<bitmaps.Undo>): Action {
  let undo: bitmaps.Undo | undefined;
  return {
    async prepare() {
      checkIndividual(env, kind);
      undo = await change();
    },
    commit: NOTHING,
    async abort() {
      undo?.();
    },
    clean: NOTHING,
  };
}

/**
 * block_dirty_bitmap_remove_prepare/commit/abort: prepare only marks the
 * bitmap busy, so later actions still see it (adding the same name fails);
 * commit drops it; abort makes it usable again.
 */
function bitmapRemoval(env: ActionEnv, node: string, name: string): Action {
  let bitmap: ReturnType<typeof bitmaps.lookupBitmap> | undefined;
  let wasPersistent = false;
  return {
    async prepare() {
      checkIndividual(env, 'block-dirty-bitmap-remove');
      const found = bitmaps.lookupBitmap(env.ctx.graph, node, name);
      found.bitmap.check(BitmapCheck.Busy | BitmapCheck.ReadOnly);
      // As QEMU: a persistent bitmap leaves the image now; an abort keeps it in memory, to be stored again at close.
      await bitmaps.unstoreBitmap(found.node, found.bitmap);
      // bdrv_dirty_bitmap_skip_store: nothing stores it again meanwhile (a snapshot's commit going read-only, iotest 254).
      wasPersistent = found.bitmap.persistent;
      found.bitmap.persistent = false;
      found.bitmap.busy = true;
      bitmap = found;
    },
    async commit() {
      if (!bitmap) return;
      bitmap.bitmap.busy = false;
      bitmap.node.dirtyBitmaps.release(bitmap.bitmap);
    },
    async abort() {
      if (!bitmap) return;
      bitmap.bitmap.busy = false;
      bitmap.bitmap.persistent = wasPersistent;
    },
    clean: NOTHING,
  };
}

/** external_snapshot_*: the overlay goes on in prepare; commit makes the old node read-only; abort takes the overlay off again. */
function snapshotAction(env: ActionEnv, kind: Kind, prepare: () => Promise<PreparedSnapshot>): Action {
  let prepared: PreparedSnapshot | undefined;
  return {
    async prepare() {
      checkIndividual(env, kind);
      prepared = await prepare();
    },
    async commit() {
      if (prepared) await commitSnapshot(env.ctx, prepared);
    },
    async abort() {
      if (prepared) await abortSnapshot(env.ctx, prepared);
    },
    clean: NOTHING,
  };
}

/** internal_snapshot_prepare/abort: the snapshot is taken in prepare and deleted again by abort. */
function internalSnapshotAction(env: ActionEnv, d: DataOf<'blockdev-snapshot-internal-sync'>): Action {
  let prepared: PreparedInternalSnapshot | undefined;
  return {
    async prepare() {
      checkIndividual(env, 'blockdev-snapshot-internal-sync');
      prepared = await prepareInternalSnapshot(env.ctx, d);
    },
    commit: NOTHING,
    async abort() {
      if (prepared) await abortInternalSnapshot(prepared);
    },
    clean: NOTHING,
  };
}

type Factory<K extends Kind> = (env: ActionEnv, data: DataOf<K>) => Action;

/** The action table: one entry per TransactionActionKind, as QEMU's actions[]. */
export const ACTIONS: { [K in Kind]: Factory<K> } = {
  abort: () => refusing(() => undefined, 'Transaction aborted using Abort action'),
  'blockdev-backup': (env, d) => jobAction(async () => ({ job: await prepareBlockdevBackup(env.ctx, d, env.txn) })),
  'drive-backup': (env, d) => jobAction(() => prepareDriveBackup(env.ctx, d, env.txn)),
  'block-dirty-bitmap-add': (env, d) => undoable(env, 'block-dirty-bitmap-add', async () => (await bitmaps.addBitmap(env.ctx.graph, d)).undo),
  'block-dirty-bitmap-remove': (env, d) => bitmapRemoval(env, d.node, d.name),
  'block-dirty-bitmap-clear': (env, d) => undoable(env, 'block-dirty-bitmap-clear', () => bitmaps.clearBitmap(env.ctx.graph, d.node, d.name)),
  'block-dirty-bitmap-enable': (env, d) => undoable(env, 'block-dirty-bitmap-enable', () => bitmaps.setBitmapEnabled(env.ctx.graph, d.node, d.name, true)),
  'block-dirty-bitmap-disable': (env, d) => undoable(env, 'block-dirty-bitmap-disable', () => bitmaps.setBitmapEnabled(env.ctx.graph, d.node, d.name, false)),
  'block-dirty-bitmap-merge': (env, d) => undoable(env, 'block-dirty-bitmap-merge', () => bitmaps.mergeBitmaps(env.ctx.graph, d.node, d.target, d.bitmaps)),
  'blockdev-snapshot': (env, d) => snapshotAction(env, 'blockdev-snapshot', () => prepareSnapshot(env.ctx, d)),
  'blockdev-snapshot-sync': (env, d) => snapshotAction(env, 'blockdev-snapshot-sync', () => prepareSnapshotSync(env.ctx, d)),
  'blockdev-snapshot-internal-sync': (env, d) => internalSnapshotAction(env, d),
};

export function createAction(env: ActionEnv, request: ActionRequest): Action {
  return (ACTIONS[request.type] as Factory<Kind>)(env, request.data as DataOf<Kind>);
}
