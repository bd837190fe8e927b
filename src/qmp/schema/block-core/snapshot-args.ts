/** The external and internal snapshot argument types (qapi/block-core.json 7.2), and blockdev-snapshot-sync. */
import { command } from '../command.js';
import { str, struct } from '../types.js';
import { NewImageMode } from '../backup.js';
import { SnapshotInfo } from './node-info.js';

export const BlockdevSnapshotSync = struct('BlockdevSnapshotSync', {
  '*device': str,
  '*node-name': str,
  'snapshot-file': str,
  '*snapshot-node-name': str,
  '*format': str,
  '*mode': NewImageMode,
});
export const BlockdevSnapshot = struct('BlockdevSnapshot', { node: str, overlay: str });
export const BlockdevSnapshotInternal = struct('BlockdevSnapshotInternal', { device: str, name: str });

export const blockdevSnapshotSync = command('blockdev-snapshot-sync', { args: BlockdevSnapshotSync });
export const blockdevSnapshot = command('blockdev-snapshot', { args: BlockdevSnapshot });
export const blockdevSnapshotInternalSync = command('blockdev-snapshot-internal-sync', { args: BlockdevSnapshotInternal });
export const blockdevSnapshotDeleteInternalSync = command('blockdev-snapshot-delete-internal-sync', {
  args: { device: str, '*id': str, '*name': str },
  returns: SnapshotInfo,
  allowPreconfig: true,
});
