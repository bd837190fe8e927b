/**
 * qapi/block-core.json (7.2): blockdev-add's BlockdevOptions with the
 * variants of the drivers blockemu opens, blockdev-del, and the node
 * queries. Every driver name of QEMU's enum is accepted by validation
 * (so a valid but unimplemented driver gets our "not supported" error
 * rather than QEMU's enum error); drivers without a variant here take no
 * further members.
 */
import { command } from './command.js';
import { alternate, any, array, bool, enumType, int, int32, lazy, nul, str, struct, type QType, uint64, union } from './types.js';

export const BlockdevDriver = enumType('BlockdevDriver', [
  'blkdebug', 'blklogwrites', 'blkreplay', 'blkverify', 'bochs', 'cloop', 'compress', 'copy-before-write', 'copy-on-read', 'dmg',
  'file', 'snapshot-access', 'ftp', 'ftps', 'gluster', 'host_cdrom', 'host_device', 'http', 'https', 'iscsi', 'luks', 'nbd', 'nfs',
  'null-aio', 'null-co', 'nvme', 'parallels', 'preallocate', 'qcow', 'qcow2', 'qed', 'quorum', 'raw', 'rbd', 'replication', 'ssh',
  'throttle', 'vdi', 'vhdx', 'vmdk', 'vpc', 'vvfat',
]);
export const BlockdevDiscardOptions = enumType('BlockdevDiscardOptions', ['ignore', 'unmap']);
export const BlockdevDetectZeroesOptions = enumType('BlockdevDetectZeroesOptions', ['off', 'on', 'unmap']);
export const BlockdevAioOptions = enumType('BlockdevAioOptions', ['threads', 'native', 'io_uring']);
export const OnOffAuto = enumType('OnOffAuto', ['auto', 'on', 'off']);
export const BlockdevCacheOptions = struct('BlockdevCacheOptions', { '*direct': bool, '*no-flush': bool });
export const BlockPermission = enumType('BlockPermission', ['consistent-read', 'write', 'write-unchanged', 'resize']);
export const BlkdebugIOType = enumType('BlkdebugIOType', ['read', 'write', 'write-zeroes', 'discard', 'flush', 'block-status']);
export const BlkdebugEvent = enumType('BlkdebugEvent', [
  'l1_update', 'l1_grow_alloc_table', 'l1_grow_write_table', 'l1_grow_activate_table', 'l2_load', 'l2_update', 'l2_update_compressed',
  'l2_alloc_cow_read', 'l2_alloc_write', 'read_aio', 'read_backing_aio', 'read_compressed', 'write_aio', 'write_compressed',
  'vmstate_load', 'vmstate_save', 'cow_read', 'cow_write', 'reftable_load', 'reftable_grow', 'reftable_update', 'refblock_load',
  'refblock_update', 'refblock_update_part', 'refblock_alloc', 'refblock_alloc_hookup', 'refblock_alloc_write',
  'refblock_alloc_write_blocks', 'refblock_alloc_write_table', 'refblock_alloc_switch_table', 'cluster_alloc', 'cluster_alloc_bytes',
  'cluster_free', 'flush_to_os', 'flush_to_disk', 'pwritev_rmw_head', 'pwritev_rmw_after_head', 'pwritev_rmw_tail',
  'pwritev_rmw_after_tail', 'pwritev', 'pwritev_zero', 'pwritev_done', 'empty_image_prepare', 'l1_shrink_write_table',
  'l1_shrink_free_l2_clusters', 'cor_write', 'cluster_alloc_space', 'none',
]);

/** The shape of a node definition inside a reference (recursive, so declared by hand). */
export interface BlockdevDefinition {
  driver: string;
  [member: string]: unknown;
}
const options: QType<BlockdevDefinition> = lazy((): QType<BlockdevDefinition> => BlockdevOptions as unknown as QType<BlockdevDefinition>);
export const BlockdevRef: QType<BlockdevDefinition | string> = alternate('BlockdevRef', [options, str] as const);
export const BlockdevRefOrNull: QType<BlockdevDefinition | string | null> = alternate('BlockdevRefOrNull', [options, str, nul] as const);

export const BlockdevOptionsFile = struct('BlockdevOptionsFile', {
  filename: str,
  '*pr-manager': str,
  '*locking': OnOffAuto,
  '*aio': BlockdevAioOptions,
  '*aio-max-batch': int,
  '*drop-cache': bool,
  '*x-check-cache-dropped': bool,
});
export const BlockdevOptionsRaw = struct('BlockdevOptionsRaw', { file: BlockdevRef, '*offset': int, '*size': int });
export const BlockdevOptionsGenericFormat = struct('BlockdevOptionsGenericFormat', { file: BlockdevRef });
export const BlockdevOptionsGenericCOWFormat = struct('BlockdevOptionsGenericCOWFormat', { file: BlockdevRef, '*backing': BlockdevRefOrNull });
export const Qcow2OverlapCheckMode = enumType('Qcow2OverlapCheckMode', ['none', 'constant', 'cached', 'all']);
export const Qcow2OverlapCheckFlags = struct('Qcow2OverlapCheckFlags', {
  '*template': Qcow2OverlapCheckMode,
  '*main-header': bool,
  '*active-l1': bool,
  '*active-l2': bool,
  '*refcount-table': bool,
  '*refcount-block': bool,
  '*snapshot-table': bool,
  '*inactive-l1': bool,
  '*inactive-l2': bool,
  '*bitmap-directory': bool,
});
export const Qcow2OverlapChecks = alternate('Qcow2OverlapChecks', [Qcow2OverlapCheckFlags, Qcow2OverlapCheckMode] as const);
export const BlockdevOptionsQcow2 = struct('BlockdevOptionsQcow2', {
  file: BlockdevRef,
  '*backing': BlockdevRefOrNull,
  '*lazy-refcounts': bool,
  '*pass-discard-request': bool,
  '*pass-discard-snapshot': bool,
  '*pass-discard-other': bool,
  '*overlap-check': Qcow2OverlapChecks,
  '*cache-size': int,
  '*l2-cache-size': int,
  '*l2-cache-entry-size': int,
  '*refcount-cache-size': int,
  '*cache-clean-interval': int,
  // Encryption is refused when opening; validated loosely here.
  '*encrypt': any,
  '*data-file': BlockdevRef,
});
export const BlockdevOptionsNull = struct('BlockdevOptionsNull', { '*size': int, '*latency-ns': uint64, '*read-zeroes': bool });
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

export const BlockdevOptions = union(
  'BlockdevOptions',
  {
    driver: BlockdevDriver,
    '*node-name': str,
    '*discard': BlockdevDiscardOptions,
    '*cache': BlockdevCacheOptions,
    '*read-only': bool,
    '*auto-read-only': bool,
    '*force-share': bool,
    '*detect-zeroes': BlockdevDetectZeroesOptions,
  },
  'driver',
  {
    blkdebug: BlockdevOptionsBlkdebug,
    file: BlockdevOptionsFile,
    host_device: BlockdevOptionsFile,
    host_cdrom: BlockdevOptionsFile,
    'null-aio': BlockdevOptionsNull,
    'null-co': BlockdevOptionsNull,
    qcow2: BlockdevOptionsQcow2,
    raw: BlockdevOptionsRaw,
    bochs: BlockdevOptionsGenericFormat,
    cloop: BlockdevOptionsGenericFormat,
    compress: BlockdevOptionsGenericFormat,
    dmg: BlockdevOptionsGenericFormat,
    parallels: BlockdevOptionsGenericFormat,
    'snapshot-access': BlockdevOptionsGenericFormat,
    vdi: BlockdevOptionsGenericFormat,
    vhdx: BlockdevOptionsGenericFormat,
    vpc: BlockdevOptionsGenericFormat,
    qed: BlockdevOptionsGenericCOWFormat,
    vmdk: BlockdevOptionsGenericCOWFormat,
  },
);

// Return types: produced by us, declared for introspection.
const ImageInfoSpecificQCow2 = struct('ImageInfoSpecificQCow2', {
  compat: str,
  '*data-file': str,
  '*data-file-raw': bool,
  '*extended-l2': bool,
  '*lazy-refcounts': bool,
  '*corrupt': bool,
  'refcount-bits': int,
  'compression-type': enumType('Qcow2CompressionType', ['zlib', 'zstd']),
});
const ImageInfoSpecific = union('ImageInfoSpecific', { type: enumType('ImageInfoSpecificKind', ['qcow2', 'vmdk', 'luks', 'rbd', 'file']) }, 'type', {
  qcow2: struct('ImageInfoSpecificQCow2Wrapper', { data: ImageInfoSpecificQCow2 }),
});
const imageInfoMembers = {
  filename: str,
  format: str,
  '*dirty-flag': bool,
  '*actual-size': int,
  'virtual-size': int,
  '*cluster-size': int,
  '*encrypted': bool,
  '*compressed': bool,
  '*backing-filename': str,
  '*full-backing-filename': str,
  '*backing-filename-format': str,
  '*backing-image': any,
  '*format-specific': ImageInfoSpecific,
};
export const ImageInfo = struct('ImageInfo', imageInfoMembers);
export const BlockdevCacheInfo = struct('BlockdevCacheInfo', { writeback: bool, direct: bool, 'no-flush': bool });
export const BlockDirtyInfo = struct('BlockDirtyInfo', {
  '*name': str,
  count: int,
  granularity: uint64,
  recording: bool,
  busy: bool,
  '*persistent': bool,
  '*inconsistent': bool,
});
export const BlockDeviceInfo = struct('BlockDeviceInfo', {
  file: str,
  '*node-name': str,
  ro: bool,
  drv: str,
  '*backing_file': str,
  backing_file_depth: int,
  encrypted: bool,
  detect_zeroes: BlockdevDetectZeroesOptions,
  bps: int,
  bps_rd: int,
  bps_wr: int,
  iops: int,
  iops_rd: int,
  iops_wr: int,
  image: ImageInfo,
  cache: BlockdevCacheInfo,
  write_threshold: int,
  '*dirty-bitmaps': array(BlockDirtyInfo),
});
export const BlockInfo = struct('BlockInfo', { device: str, '*qdev': str, type: str, removable: bool, locked: bool, '*inserted': BlockDeviceInfo });

export const blockdevAdd = command('blockdev-add', { args: BlockdevOptions });
export const blockdevDel = command('blockdev-del', { args: { 'node-name': str } });
export const queryNamedBlockNodes = command('query-named-block-nodes', { args: { '*flat': bool }, returns: array(BlockDeviceInfo) });
export const queryBlock = command('query-block', { returns: array(BlockInfo) });

export const BLOCKDEV_COMMANDS = [blockdevAdd, blockdevDel, queryNamedBlockNodes, queryBlock] as const;
