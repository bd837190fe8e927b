/** qapi/transaction.json (7.2): `transaction` and its action union, each payload wrapped under `data`. */
import { BlockdevBackup, DriveBackup } from './backup.js';
import { BlockDirtyBitmapAdd, BlockDirtyBitmapMerge } from './block-core/bitmaps.js';
import { BlockDirtyBitmap } from './block-core/common.js';
import { BlockdevSnapshot, BlockdevSnapshotInternal, BlockdevSnapshotSync } from './block-core/snapshot-args.js';
import { command } from './command.js';
import { array, enumType, struct, union } from './types.js';

export const Abort = struct('Abort', {});
export const ActionCompletionMode = enumType('ActionCompletionMode', ['individual', 'grouped']);
export const TransactionActionKind = enumType('TransactionActionKind', [
  'abort', 'block-dirty-bitmap-add', 'block-dirty-bitmap-remove', 'block-dirty-bitmap-clear', 'block-dirty-bitmap-enable',
  'block-dirty-bitmap-disable', 'block-dirty-bitmap-merge', 'blockdev-backup', 'blockdev-snapshot', 'blockdev-snapshot-internal-sync',
  'blockdev-snapshot-sync', 'drive-backup',
]);

const BlockDirtyBitmapWrapper = struct('BlockDirtyBitmapWrapper', { data: BlockDirtyBitmap });
export const TransactionAction = union('TransactionAction', { type: TransactionActionKind }, 'type', {
  abort: struct('AbortWrapper', { data: Abort }),
  'block-dirty-bitmap-add': struct('BlockDirtyBitmapAddWrapper', { data: BlockDirtyBitmapAdd }),
  'block-dirty-bitmap-remove': BlockDirtyBitmapWrapper,
  'block-dirty-bitmap-clear': BlockDirtyBitmapWrapper,
  'block-dirty-bitmap-enable': BlockDirtyBitmapWrapper,
  'block-dirty-bitmap-disable': BlockDirtyBitmapWrapper,
  'block-dirty-bitmap-merge': struct('BlockDirtyBitmapMergeWrapper', { data: BlockDirtyBitmapMerge }),
  'blockdev-backup': struct('BlockdevBackupWrapper', { data: BlockdevBackup }),
  'blockdev-snapshot': struct('BlockdevSnapshotWrapper', { data: BlockdevSnapshot }),
  'blockdev-snapshot-internal-sync': struct('BlockdevSnapshotInternalWrapper', { data: BlockdevSnapshotInternal }),
  'blockdev-snapshot-sync': struct('BlockdevSnapshotSyncWrapper', { data: BlockdevSnapshotSync }),
  'drive-backup': struct('DriveBackupWrapper', { data: DriveBackup }),
});
export const TransactionProperties = struct('TransactionProperties', { '*completion-mode': ActionCompletionMode });

export const transaction = command('transaction', { args: { actions: array(TransactionAction), '*properties': TransactionProperties } });
