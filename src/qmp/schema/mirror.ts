/** qapi/block-core.json (7.2): blockdev-mirror and drive-mirror. */
import { BlockdevOnError } from './block-core/common.js';
import { MirrorSyncMode, NewImageMode } from './backup.js';
import { command } from './command.js';
import { bool, enumType, int, str, struct, uint32 } from './types.js';

export const MirrorCopyMode = enumType('MirrorCopyMode', ['background', 'write-blocking']);

export const blockdevMirror = command('blockdev-mirror', {
  args: {
    '*job-id': str,
    device: str,
    target: str,
    '*replaces': str,
    sync: MirrorSyncMode,
    '*speed': int,
    '*granularity': uint32,
    '*buf-size': int,
    '*on-source-error': BlockdevOnError,
    '*on-target-error': BlockdevOnError,
    '*filter-node-name': str,
    '*copy-mode': MirrorCopyMode,
    '*auto-finalize': bool,
    '*auto-dismiss': bool,
  },
  allowPreconfig: true,
});

export const DriveMirror = struct('DriveMirror', {
  '*job-id': str,
  device: str,
  target: str,
  '*format': str,
  '*node-name': str,
  '*replaces': str,
  sync: MirrorSyncMode,
  '*mode': NewImageMode,
  '*speed': int,
  '*granularity': uint32,
  '*buf-size': int,
  '*on-source-error': BlockdevOnError,
  '*on-target-error': BlockdevOnError,
  '*unmap': bool,
  '*copy-mode': MirrorCopyMode,
  '*auto-finalize': bool,
  '*auto-dismiss': bool,
});
export const driveMirror = command('drive-mirror', { args: DriveMirror, allowPreconfig: true });
