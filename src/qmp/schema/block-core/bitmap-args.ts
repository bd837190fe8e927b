/** The argument types of the block-dirty-bitmap commands (qapi/block-core.json 7.2), which transaction actions carry too. */
import { alternate, array, bool, str, struct, uint32 } from '../types.js';
import { BlockDirtyBitmap } from './common.js';

export const BlockDirtyBitmapAdd = struct('BlockDirtyBitmapAdd', { node: str, name: str, '*granularity': uint32, '*persistent': bool, '*disabled': bool });
export const BlockDirtyBitmapOrStr = alternate('BlockDirtyBitmapOrStr', [str, BlockDirtyBitmap] as const);
export const BlockDirtyBitmapMerge = struct('BlockDirtyBitmapMerge', { node: str, target: str, bitmaps: array(BlockDirtyBitmapOrStr) });
