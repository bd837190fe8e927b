import { JobTxn } from '../../jobs/txn.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { blockdevSnapshot, blockdevSnapshotInternalSync, blockdevSnapshotSync } from '../schema/block-core/snapshot-args.js';
import { blockdevBackup, driveBackup } from '../schema/backup.js';
import { transaction } from '../schema/transaction.js';
import { type Action, type ActionEnv, type ActionRequest, createAction } from './transaction-actions.js';

/**
 * qmp_transaction: prepare every action in order; at the first failure
 * abort the prepared ones (the failing one included) in reverse order and
 * report that failure; otherwise commit all. Clean runs for every action
 * either way. With completion-mode grouped the jobs share one JobTxn.
 */
export async function runTransaction(ctx: QmpContext, requests: readonly ActionRequest[], mode: 'individual' | 'grouped'): Promise<void> {
  const env: ActionEnv = { ctx, mode, txn: mode === 'grouped' ? new JobTxn() : undefined };
  // QEMU drains all I/O first: running jobs report paused, then running.
  ctx.jobs.drainAll();
  const done: Action[] = [];
  let failure: unknown;
  for (const request of requests) {
    const action = createAction(env, request);
    done.push(action);
    try {
      await action.prepare();
    } catch (err) {
      failure = err;
      break;
    }
  }
  try {
    if (failure === undefined) for (const action of done) await action.commit();
    else for (const action of [...done].reverse()) await action.abort();
  } finally {
    for (const action of done) await action.clean();
  }
  if (failure !== undefined) throw failure;
}

/** `transaction`, and the commands QEMU runs as a transaction of one action (blockdev_do_action): the backups and snapshots. */
export function addTransactionCommands(table: CommandTable<QmpContext>): void {
  table
    .add(transaction, (a, ctx) => runTransaction(ctx, a.actions as ActionRequest[], a.properties?.['completion-mode'] ?? 'individual'))
    .add(blockdevSnapshotSync, (a, ctx) => runTransaction(ctx, [{ type: 'blockdev-snapshot-sync', data: a }], 'individual'))
    .add(blockdevSnapshot, (a, ctx) => runTransaction(ctx, [{ type: 'blockdev-snapshot', data: a }], 'individual'))
    .add(blockdevSnapshotInternalSync, (a, ctx) => runTransaction(ctx, [{ type: 'blockdev-snapshot-internal-sync', data: a }], 'individual'))
    .add(blockdevBackup, (a, ctx) => runTransaction(ctx, [{ type: 'blockdev-backup', data: a }], 'individual'))
    .add(driveBackup, (a, ctx) => runTransaction(ctx, [{ type: 'drive-backup', data: a }], 'individual'));
}
