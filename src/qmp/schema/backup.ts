/** qapi/block-core.json (7.2): blockdev-backup and drive-backup. */
import { BlockdevOnError } from './block-core/common.js';
import { command } from './command.js';
import { bool, enumType, int, str, struct } from './types.js';

export const MirrorSyncMode = enumType('MirrorSyncMode', ['top', 'full', 'none', 'incremental', 'bitmap']);
export const BitmapSyncMode = enumType('BitmapSyncMode', ['on-success', 'never', 'always']);
export const NewImageMode = enumType('NewImageMode', ['existing', 'absolute-paths']);
export const BackupPerf = struct('BackupPerf', { '*use-copy-range': bool, '*max-workers': int, '*max-chunk': int });

const backupCommon = {
  '*job-id': str,
  device: str,
  sync: MirrorSyncMode,
  '*speed': int,
  '*bitmap': str,
  '*bitmap-mode': BitmapSyncMode,
  '*compress': bool,
  '*on-source-error': BlockdevOnError,
  '*on-target-error': BlockdevOnError,
  '*auto-finalize': bool,
  '*auto-dismiss': bool,
  '*filter-node-name': str,
  '*x-perf': BackupPerf,
};
export const BlockdevBackup = struct('BlockdevBackup', { ...backupCommon, target: str });
export const DriveBackup = struct('DriveBackup', { ...backupCommon, target: str, '*format': str, '*mode': NewImageMode });

export const blockdevBackup = command('blockdev-backup', { args: BlockdevBackup });
export const driveBackup = command('drive-backup', { args: DriveBackup });
