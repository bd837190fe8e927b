/** qapi/block-core.json (7.2): the block-dirty-bitmap-* commands and their argument types. */
import { command } from '../command.js';
import { alternate, array, bool, str, struct, uint32 } from '../types.js';
import { BlockDirtyBitmap } from './common.js';

export const BlockDirtyBitmapAdd = struct('BlockDirtyBitmapAdd', {
  node: str,
  name: str,
  '*granularity': uint32,
  '*persistent': bool,
  '*disabled': bool,
});
export const BlockDirtyBitmapOrStr = alternate('BlockDirtyBitmapOrStr', [str, BlockDirtyBitmap] as const);
export const BlockDirtyBitmapMerge = struct('BlockDirtyBitmapMerge', { node: str, target: str, bitmaps: array(BlockDirtyBitmapOrStr) });

export const blockDirtyBitmapAdd = command('block-dirty-bitmap-add', { args: BlockDirtyBitmapAdd });
export const blockDirtyBitmapRemove = command('block-dirty-bitmap-remove', { args: BlockDirtyBitmap });
export const blockDirtyBitmapClear = command('block-dirty-bitmap-clear', { args: BlockDirtyBitmap });
export const blockDirtyBitmapEnable = command('block-dirty-bitmap-enable', { args: BlockDirtyBitmap });
export const blockDirtyBitmapDisable = command('block-dirty-bitmap-disable', { args: BlockDirtyBitmap });
export const blockDirtyBitmapMerge = command('block-dirty-bitmap-merge', { args: BlockDirtyBitmapMerge });
export const BlockDirtyBitmapSha256 = struct('BlockDirtyBitmapSha256', { sha256: str });
/** A debugging aid the iotests compare bitmaps with (176 and others): the SHA-256 of the bitmap's bits. */
export const xDebugBlockDirtyBitmapSha256 = command('x-debug-block-dirty-bitmap-sha256', { args: BlockDirtyBitmap, returns: BlockDirtyBitmapSha256, features: ['unstable'] });

export const BITMAP_COMMANDS = [
  blockDirtyBitmapAdd,
  blockDirtyBitmapRemove,
  blockDirtyBitmapClear,
  blockDirtyBitmapEnable,
  blockDirtyBitmapDisable,
  blockDirtyBitmapMerge,
  xDebugBlockDirtyBitmapSha256,
] as const;
