/**
 * qapi/block-export.json (7.2): the NBD server, block exports and their
 * event. Every export type of the Debian build of qemu-storage-daemon has
 * its variant, so their options are validated as QEMU validates them;
 * blockemu then serves 'nbd' and 'fuse'.
 */
import { BlockDirtyBitmapOrStr } from './block-core/bitmaps.js';
import { command, event } from './command.js';
import { SocketAddress, SocketAddressLegacy } from './sockets.js';
import { array, bool, enumType, size, str, struct, uint16, uint32, union } from './types.js';

export const NbdServerOptions = struct('NbdServerOptions', {
  addr: SocketAddress,
  '*tls-creds': str,
  '*tls-authz': str,
  '*max-connections': uint32,
});

const nbdBase = { '*name': str, '*description': str };
export const BlockExportOptionsNbd = struct('BlockExportOptionsNbd', { ...nbdBase, '*bitmaps': array(BlockDirtyBitmapOrStr), '*allocation-depth': bool });
export const BlockExportOptionsVhostUserBlk = struct('BlockExportOptionsVhostUserBlk', { addr: SocketAddress, '*logical-block-size': size, '*num-queues': uint16 });
export const FuseExportAllowOther = enumType('FuseExportAllowOther', ['off', 'on', 'auto']);
export const BlockExportOptionsFuse = struct('BlockExportOptionsFuse', { mountpoint: str, '*growable': bool, '*allow-other': FuseExportAllowOther });
export const BlockExportOptionsVduseBlk = struct('BlockExportOptionsVduseBlk', {
  name: str,
  '*num-queues': uint16,
  '*queue-size': uint16,
  '*logical-block-size': size,
  '*serial': str,
});

export const BlockExportType = enumType('BlockExportType', ['nbd', 'vhost-user-blk', 'fuse', 'vduse-blk']);
export const BlockExportOptions = union(
  'BlockExportOptions',
  {
    type: BlockExportType,
    id: str,
    '*fixed-iothread': bool,
    '*iothread': str,
    'node-name': str,
    '*writable': bool,
    '*writethrough': bool,
  },
  'type',
  { nbd: BlockExportOptionsNbd, 'vhost-user-blk': BlockExportOptionsVhostUserBlk, fuse: BlockExportOptionsFuse, 'vduse-blk': BlockExportOptionsVduseBlk },
);

export const BlockExportRemoveMode = enumType('BlockExportRemoveMode', ['safe', 'hard']);
export const BlockExportInfo = struct('BlockExportInfo', { id: str, type: BlockExportType, 'node-name': str, 'shutting-down': bool });

export const nbdServerStart = command('nbd-server-start', {
  args: { addr: SocketAddressLegacy, '*tls-creds': str, '*tls-authz': str, '*max-connections': uint32 },
});
export const NbdServerAddOptions = struct('NbdServerAddOptions', { ...nbdBase, device: str, '*writable': bool, '*bitmap': str });
export const nbdServerAdd = command('nbd-server-add', { args: NbdServerAddOptions, features: ['deprecated'] });
export const nbdServerRemove = command('nbd-server-remove', { args: { name: str, '*mode': BlockExportRemoveMode }, features: ['deprecated'] });
export const nbdServerStop = command('nbd-server-stop');
export const blockExportAdd = command('block-export-add', { args: BlockExportOptions });
export const blockExportDel = command('block-export-del', { args: { id: str, '*mode': BlockExportRemoveMode } });
export const queryBlockExports = command('query-block-exports', { returns: array(BlockExportInfo) });

export const blockExportDeleted = event('BLOCK_EXPORT_DELETED', { id: str });

export const BLOCK_EXPORT_COMMANDS = [nbdServerStart, nbdServerAdd, nbdServerRemove, nbdServerStop, blockExportAdd, blockExportDel, queryBlockExports] as const;
export const BLOCK_EXPORT_EVENTS = [blockExportDeleted] as const;
