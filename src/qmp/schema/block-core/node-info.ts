/**
 * What query-named-block-nodes and query-block return (qapi/block-core.json
 * 7.2). Produced by our handlers, never validated; declared so
 * query-qmp-schema describes them as QEMU does.
 */
import { IO_LIMIT_AVG_MEMBERS, IO_LIMIT_BURST_MEMBERS } from '../block-throttle.js';
import { QCryptoBlockInfoLUKS } from '../crypto.js';
import { array, bool, enumType, type Infer, int, lazy, type QType, str, struct, uint32, union } from '../types.js';
import { BlockDeviceIoStatus, BlockdevDetectZeroesOptions, BlockdevQcow2EncryptionFormat, Qcow2CompressionType, RbdImageEncryptionFormat } from './common.js';

export const SnapshotInfo = struct('SnapshotInfo', {
  id: str,
  name: str,
  'vm-state-size': int,
  'date-sec': int,
  'date-nsec': int,
  'vm-clock-sec': int,
  'vm-clock-nsec': int,
  '*icount': int,
});
export const ImageInfoSpecificQCow2Encryption = union('ImageInfoSpecificQCow2Encryption', { format: BlockdevQcow2EncryptionFormat }, 'format', {
  luks: QCryptoBlockInfoLUKS,
});
export const Qcow2BitmapInfoFlags = enumType('Qcow2BitmapInfoFlags', ['in-use', 'auto']);
export const Qcow2BitmapInfo = struct('Qcow2BitmapInfo', { name: str, granularity: uint32, flags: array(Qcow2BitmapInfoFlags) });
export const ImageInfoSpecificQCow2 = struct('ImageInfoSpecificQCow2', {
  compat: str,
  '*data-file': str,
  '*data-file-raw': bool,
  '*extended-l2': bool,
  '*lazy-refcounts': bool,
  '*corrupt': bool,
  'refcount-bits': int,
  '*encrypt': ImageInfoSpecificQCow2Encryption,
  '*bitmaps': array(Qcow2BitmapInfo),
  'compression-type': Qcow2CompressionType,
});

/** ImageInfo nests itself (backing-image, vmdk extents); TypeScript needs its shape spelled out. */
export interface ImageInfoValue {
  filename: string;
  format: string;
  'dirty-flag'?: boolean;
  'actual-size'?: number;
  'virtual-size': number;
  'cluster-size'?: number;
  encrypted?: boolean;
  compressed?: boolean;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  snapshots?: Array<Infer<typeof SnapshotInfo>>;
  'backing-image'?: ImageInfoValue;
  'format-specific'?: Infer<typeof ImageInfoSpecific>;
}
const imageInfo = lazy((): QType<ImageInfoValue> => ImageInfo);

export const ImageInfoSpecificVmdk = struct('ImageInfoSpecificVmdk', { 'create-type': str, cid: int, 'parent-cid': int, extents: array(imageInfo) });
export const ImageInfoSpecificRbd = struct('ImageInfoSpecificRbd', { '*encryption-format': RbdImageEncryptionFormat });
export const ImageInfoSpecificKind = enumType('ImageInfoSpecificKind', ['qcow2', 'vmdk', 'luks', 'rbd']);
export const ImageInfoSpecific = union('ImageInfoSpecific', { type: ImageInfoSpecificKind }, 'type', {
  qcow2: struct('ImageInfoSpecificQCow2Wrapper', { data: ImageInfoSpecificQCow2 }),
  vmdk: struct('ImageInfoSpecificVmdkWrapper', { data: ImageInfoSpecificVmdk }),
  luks: struct('ImageInfoSpecificLUKSWrapper', { data: QCryptoBlockInfoLUKS }),
  rbd: struct('ImageInfoSpecificRbdWrapper', { data: ImageInfoSpecificRbd }),
});

export const ImageInfo: QType<ImageInfoValue> = struct('ImageInfo', {
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
  '*snapshots': array(SnapshotInfo),
  '*backing-image': imageInfo,
  '*format-specific': ImageInfoSpecific,
}) as QType<ImageInfoValue>;

export const BlockdevCacheInfo = struct('BlockdevCacheInfo', { writeback: bool, direct: bool, 'no-flush': bool });
export const BlockDirtyInfo = struct('BlockDirtyInfo', {
  '*name': str,
  count: int,
  granularity: uint32,
  recording: bool,
  busy: bool,
  persistent: bool,
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
  ...IO_LIMIT_AVG_MEMBERS,
  image: ImageInfo,
  ...IO_LIMIT_BURST_MEMBERS,
  cache: BlockdevCacheInfo,
  write_threshold: int,
  '*dirty-bitmaps': array(BlockDirtyInfo),
});

export const BlockInfo = struct('BlockInfo', {
  device: str,
  '*qdev': str,
  type: str,
  removable: bool,
  locked: bool,
  '*inserted': BlockDeviceInfo,
  '*tray_open': bool,
  '*io-status': BlockDeviceIoStatus,
});
