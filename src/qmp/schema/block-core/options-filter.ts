/**
 * Filter and test drivers' options (qapi/block-core.json 7.2): blkdebug,
 * blklogwrites, blkverify, blkreplay, quorum, throttle, copy-on-read,
 * copy-before-write, preallocate, replication.
 */
import { BLKDEBUG_EVENT_NAMES } from '../../../blockdev/drivers/blkdebug-events.js';
import { array, bool, enumType, int, int32, str, struct, uint32, uint64 } from '../types.js';
import { BlockDirtyBitmap, BlockPermission } from './common.js';
import { genericFormat } from './options-format.js';
import { BlockdevRef } from './ref.js';

export const BlkdebugEvent = enumType('BlkdebugEvent', BLKDEBUG_EVENT_NAMES);
export const BlkdebugIOType = enumType('BlkdebugIOType', ['read', 'write', 'write-zeroes', 'discard', 'flush', 'block-status']);
export const BlkdebugInjectErrorOptions = struct('BlkdebugInjectErrorOptions', {
  event: BlkdebugEvent,
  '*state': int,
  '*iotype': BlkdebugIOType,
  '*errno': int,
  '*sector': int,
  '*once': bool,
  '*immediately': bool,
});
export const BlkdebugSetStateOptions = struct('BlkdebugSetStateOptions', { event: BlkdebugEvent, '*state': int, new_state: int });
export const BlockdevOptionsBlkdebug = struct('BlockdevOptionsBlkdebug', {
  image: BlockdevRef,
  '*config': str,
  '*align': int,
  '*max-transfer': int32,
  '*opt-write-zero': int32,
  '*max-write-zero': int32,
  '*opt-discard': int32,
  '*max-discard': int32,
  '*inject-error': array(BlkdebugInjectErrorOptions),
  '*set-state': array(BlkdebugSetStateOptions),
  '*take-child-perms': array(BlockPermission),
  '*unshare-child-perms': array(BlockPermission),
});

export const BlockdevOptionsBlklogwrites = struct('BlockdevOptionsBlklogwrites', {
  file: BlockdevRef,
  log: BlockdevRef,
  '*log-sector-size': uint32,
  '*log-append': bool,
  '*log-super-update-interval': uint64,
});
export const BlockdevOptionsBlkverify = struct('BlockdevOptionsBlkverify', { test: BlockdevRef, raw: BlockdevRef });
export const BlockdevOptionsBlkreplay = struct('BlockdevOptionsBlkreplay', { image: BlockdevRef });

export const QuorumReadPattern = enumType('QuorumReadPattern', ['quorum', 'fifo']);
export const BlockdevOptionsQuorum = struct('BlockdevOptionsQuorum', {
  '*blkverify': bool,
  children: array(BlockdevRef),
  'vote-threshold': int,
  '*rewrite-corrupted': bool,
  '*read-pattern': QuorumReadPattern,
});

export const BlockdevOptionsThrottle = struct('BlockdevOptionsThrottle', { 'throttle-group': str, file: BlockdevRef });
export const BlockdevOptionsCor = struct('BlockdevOptionsCor', { ...genericFormat, '*bottom': str });
export const OnCbwError = enumType('OnCbwError', ['break-guest-write', 'break-snapshot']);
export const BlockdevOptionsCbw = struct('BlockdevOptionsCbw', {
  ...genericFormat,
  target: BlockdevRef,
  '*bitmap': BlockDirtyBitmap,
  '*on-cbw-error': OnCbwError,
  '*cbw-timeout': uint32,
});
export const BlockdevOptionsPreallocate = struct('BlockdevOptionsPreallocate', { ...genericFormat, '*prealloc-align': int, '*prealloc-size': int });
/** Conditional on CONFIG_REPLICATION, which the reference build has. */
export const ReplicationMode = enumType('ReplicationMode', ['primary', 'secondary']);
export const BlockdevOptionsReplication = struct('BlockdevOptionsReplication', { ...genericFormat, mode: ReplicationMode, '*top-id': str });
