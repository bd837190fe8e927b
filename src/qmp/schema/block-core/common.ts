/** The small types of qapi/block-core.json (7.2) that options, queries and events share. */
import { bool, enumType, str, struct } from '../types.js';

/** Every driver name of a Linux build without libblkio (CONFIG_BLKIO), as Debian's qemu-storage-daemon 7.2 is. */
export const BlockdevDriver = enumType('BlockdevDriver', [
  'blkdebug', 'blklogwrites', 'blkreplay', 'blkverify', 'bochs', 'cloop', 'compress', 'copy-before-write', 'copy-on-read', 'dmg',
  'file', 'snapshot-access', 'ftp', 'ftps', 'gluster', 'host_cdrom', 'host_device', 'http', 'https', 'iscsi', 'luks', 'nbd', 'nfs',
  'null-aio', 'null-co', 'nvme', 'parallels', 'preallocate', 'qcow', 'qcow2', 'qed', 'quorum', 'raw', 'rbd', 'replication', 'ssh',
  'throttle', 'vdi', 'vhdx', 'vmdk', 'vpc', 'vvfat',
]);
export const BlockdevDiscardOptions = enumType('BlockdevDiscardOptions', ['ignore', 'unmap']);
export const BlockdevDetectZeroesOptions = enumType('BlockdevDetectZeroesOptions', ['off', 'on', 'unmap']);
/** io_uring is conditional (CONFIG_LINUX_IO_URING); the reference build has it. */
export const BlockdevAioOptions = enumType('BlockdevAioOptions', ['threads', 'native', 'io_uring']);
export const BlockdevCacheOptions = struct('BlockdevCacheOptions', { '*direct': bool, '*no-flush': bool });
export const BlockPermission = enumType('BlockPermission', ['consistent-read', 'write', 'write-unchanged', 'resize']);
export const BlockDirtyBitmap = struct('BlockDirtyBitmap', { node: str, name: str });
export const BlockDeviceIoStatus = enumType('BlockDeviceIoStatus', ['ok', 'failed', 'nospace']);
export const BlockErrorAction = enumType('BlockErrorAction', ['ignore', 'report', 'stop']);
export const BlockdevOnError = enumType('BlockdevOnError', ['report', 'ignore', 'enospc', 'stop', 'auto']);
export const Qcow2CompressionType = enumType('Qcow2CompressionType', ['zlib', 'zstd']);
export const BlockdevQcow2EncryptionFormat = enumType('BlockdevQcow2EncryptionFormat', ['aes', 'luks']);
export const RbdImageEncryptionFormat = enumType('RbdImageEncryptionFormat', ['luks', 'luks2']);
