/**
 * qapi/block-core.json (7.2), as far as blockemu serves it: blockdev-add
 * with the complete BlockdevOptions union, blockdev-del, the node queries
 * and their return types, and the block events of qemu-storage-daemon.
 * The definitions live in block-core/, one concept per file.
 *
 * Every driver of QEMU's BlockdevDriver enum has its variant, so options
 * for a driver blockemu does not open are validated exactly as QEMU
 * validates them, and refused afterwards by blockdev-add's handler.
 */
import { command } from './command.js';
import { BlockdevOptions } from './block-core/blockdev-options.js';
import * as E from './block-core/events.js';
import { BlockDeviceInfo, BlockInfo } from './block-core/node-info.js';
import { BITMAP_COMMANDS } from './block-core/bitmaps.js';
import { blockCommit, blockStream } from './block-core/stream-commit.js';
import { blockSetWriteThreshold, queryBlockstats } from './block-core/stats.js';
import { BlockPermission } from './block-core/common.js';
import { StrOrNull } from './common.js';
import { array, bool, enumType, int, str, struct, uint64 } from './types.js';

export * from './block-core/common.js';
export * from './block-core/ref.js';
export * from './block-core/options-format.js';
export * from './block-core/options-filter.js';
export * from './block-core/options-protocol.js';
export * from './block-core/options-network.js';
export * from './block-core/blockdev-options.js';
export * from './block-core/node-info.js';
export * from './block-core/events.js';
export * from './block-core/bitmaps.js';
export * from './block-core/create-options.js';
export * from './block-core/stream-commit.js';
export * from './block-core/stats.js';

export const blockdevAdd = command('blockdev-add', { args: BlockdevOptions });
export const blockdevDel = command('blockdev-del', { args: { 'node-name': str } });
export const queryNamedBlockNodes = command('query-named-block-nodes', { args: { '*flat': bool }, returns: array(BlockDeviceInfo) });
export const queryBlock = command('query-block', { returns: array(BlockInfo) });

export const changeBackingFileCmd = command('change-backing-file', { args: { device: str, 'image-node-name': str, 'backing-file': str } });

export const blockResize = command('block_resize', { args: { '*device': str, '*node-name': str, size: int } });

export const blockdevReopen = command('blockdev-reopen', { args: { options: array(BlockdevOptions) } });

/** Adds a child to a quorum node or takes one away (qmp_x_blockdev_change). */
export const xBlockdevChange = command('x-blockdev-change', { args: { parent: str, '*child': str, '*node': str }, features: ['unstable'] });

/** Moves a node (and its subtree) to an iothread's AioContext; blockemu has one event loop, so only the checks matter. */
export const xBlockdevSetIothread = command('x-blockdev-set-iothread', { args: { 'node-name': str, iothread: StrOrNull, '*force': bool }, features: ['unstable'] });

export const XDbgBlockGraphNodeType = enumType('XDbgBlockGraphNodeType', ['block-backend', 'block-job', 'block-driver']);
export const XDbgBlockGraphNode = struct('XDbgBlockGraphNode', { id: uint64, type: XDbgBlockGraphNodeType, name: str });
export const XDbgBlockGraphEdge = struct('XDbgBlockGraphEdge', { parent: uint64, child: uint64, name: str, perm: array(BlockPermission), 'shared-perm': array(BlockPermission) });
export const XDbgBlockGraph = struct('XDbgBlockGraph', { nodes: array(XDbgBlockGraphNode), edges: array(XDbgBlockGraphEdge) });
/** The whole graph with every link's permissions (iotests 273 and 258 read it). */
export const xDebugQueryBlockGraph = command('x-debug-query-block-graph', { returns: XDbgBlockGraph, features: ['unstable'] });

export const BLOCK_CORE_COMMANDS = [blockdevAdd, blockdevDel, queryNamedBlockNodes, queryBlock, changeBackingFileCmd, blockResize, blockdevReopen, blockStream, blockCommit, queryBlockstats, blockSetWriteThreshold, xDebugQueryBlockGraph, xBlockdevSetIothread, xBlockdevChange, ...BITMAP_COMMANDS] as const;
export const BLOCK_CORE_EVENTS = [
  E.blockImageCorrupted,
  E.blockIoError,
  E.blockJobCompleted,
  E.blockJobCancelled,
  E.blockJobError,
  E.blockJobReady,
  E.blockJobPending,
  E.blockWriteThreshold,
  E.quorumFailure,
  E.quorumReportBad,
] as const;
