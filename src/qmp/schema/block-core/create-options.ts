/**
 * blockdev-create's options (qapi/block-core.json 7.2): the
 * BlockdevCreateOptions union with every variant QEMU declares, so options
 * for a driver blockemu cannot create are validated word for word as qsd
 * validates them before the command refuses the driver. Drivers without a
 * variant (raw among them) take no members beyond `driver`.
 */
import { command } from '../command.js';
import { luksCreateMembers, QCryptoBlockCreateOptions, QCryptoCipherAlgorithm } from '../crypto.js';
import { array, bool, enumType, int, size, str, struct, union } from '../types.js';
import { BlockdevDriver, Qcow2CompressionType, RbdImageEncryptionFormat } from './common.js';
import { BlockdevOptionsGluster, BlockdevOptionsNfs, BlockdevOptionsRbd, BlockdevOptionsSsh } from './options-network.js';
import { BlockdevRef } from './ref.js';

export const PreallocMode = enumType('PreallocMode', ['off', 'metadata', 'falloc', 'full']);

export const BlockdevCreateOptionsFile = struct('BlockdevCreateOptionsFile', {
  filename: str,
  size,
  '*preallocation': PreallocMode,
  '*nocow': bool,
  '*extent-size-hint': size,
});
export const BlockdevCreateOptionsGluster = struct('BlockdevCreateOptionsGluster', { location: BlockdevOptionsGluster, size, '*preallocation': PreallocMode });
export const BlockdevCreateOptionsLUKS = struct('BlockdevCreateOptionsLUKS', {
  ...luksCreateMembers,
  file: BlockdevRef,
  size,
  '*preallocation': PreallocMode,
});
export const BlockdevCreateOptionsNfs = struct('BlockdevCreateOptionsNfs', { location: BlockdevOptionsNfs, size });
export const BlockdevCreateOptionsParallels = struct('BlockdevCreateOptionsParallels', { file: BlockdevRef, size, '*cluster-size': size });
export const BlockdevCreateOptionsQcow = struct('BlockdevCreateOptionsQcow', {
  file: BlockdevRef,
  size,
  '*backing-file': str,
  '*encrypt': QCryptoBlockCreateOptions,
});
export const BlockdevQcow2Version = enumType('BlockdevQcow2Version', ['v2', 'v3']);
export const BlockdevCreateOptionsQcow2 = struct('BlockdevCreateOptionsQcow2', {
  file: BlockdevRef,
  '*data-file': BlockdevRef,
  '*data-file-raw': bool,
  '*extended-l2': bool,
  size,
  '*version': BlockdevQcow2Version,
  '*backing-file': str,
  '*backing-fmt': BlockdevDriver,
  '*encrypt': QCryptoBlockCreateOptions,
  '*cluster-size': size,
  '*preallocation': PreallocMode,
  '*lazy-refcounts': bool,
  '*refcount-bits': int,
  '*compression-type': Qcow2CompressionType,
});
export const BlockdevCreateOptionsQed = struct('BlockdevCreateOptionsQed', {
  file: BlockdevRef,
  size,
  '*backing-file': str,
  '*backing-fmt': BlockdevDriver,
  '*cluster-size': size,
  '*table-size': int,
});
const rbdCreateLuksBase = { 'key-secret': str, '*cipher-alg': QCryptoCipherAlgorithm };
export const RbdEncryptionCreateOptions = union('RbdEncryptionCreateOptions', { format: RbdImageEncryptionFormat }, 'format', {
  luks: struct('RbdEncryptionCreateOptionsLUKS', rbdCreateLuksBase),
  luks2: struct('RbdEncryptionCreateOptionsLUKS2', rbdCreateLuksBase),
});
export const BlockdevCreateOptionsRbd = struct('BlockdevCreateOptionsRbd', {
  location: BlockdevOptionsRbd,
  size,
  '*cluster-size': size,
  '*encrypt': RbdEncryptionCreateOptions,
});
export const BlockdevVmdkSubformat = enumType('BlockdevVmdkSubformat', [
  'monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized',
]);
export const BlockdevVmdkAdapterType = enumType('BlockdevVmdkAdapterType', ['ide', 'buslogic', 'lsilogic', 'legacyESX']);
export const BlockdevCreateOptionsVmdk = struct('BlockdevCreateOptionsVmdk', {
  file: BlockdevRef,
  size,
  '*extents': array(BlockdevRef),
  '*subformat': BlockdevVmdkSubformat,
  '*backing-file': str,
  '*adapter-type': BlockdevVmdkAdapterType,
  '*hwversion': str,
  '*toolsversion': str,
  '*zeroed-grain': bool,
});
export const BlockdevCreateOptionsSsh = struct('BlockdevCreateOptionsSsh', { location: BlockdevOptionsSsh, size });
export const BlockdevCreateOptionsVdi = struct('BlockdevCreateOptionsVdi', { file: BlockdevRef, size, '*preallocation': PreallocMode });
export const BlockdevVhdxSubformat = enumType('BlockdevVhdxSubformat', ['dynamic', 'fixed']);
export const BlockdevCreateOptionsVhdx = struct('BlockdevCreateOptionsVhdx', {
  file: BlockdevRef,
  size,
  '*log-size': size,
  '*block-size': size,
  '*subformat': BlockdevVhdxSubformat,
  '*block-state-zero': bool,
});
export const BlockdevVpcSubformat = enumType('BlockdevVpcSubformat', ['dynamic', 'fixed']);
export const BlockdevCreateOptionsVpc = struct('BlockdevCreateOptionsVpc', { file: BlockdevRef, size, '*subformat': BlockdevVpcSubformat, '*force-size': bool });

export const BlockdevCreateOptions = union('BlockdevCreateOptions', { driver: BlockdevDriver }, 'driver', {
  file: BlockdevCreateOptionsFile,
  gluster: BlockdevCreateOptionsGluster,
  luks: BlockdevCreateOptionsLUKS,
  nfs: BlockdevCreateOptionsNfs,
  parallels: BlockdevCreateOptionsParallels,
  qcow: BlockdevCreateOptionsQcow,
  qcow2: BlockdevCreateOptionsQcow2,
  qed: BlockdevCreateOptionsQed,
  rbd: BlockdevCreateOptionsRbd,
  ssh: BlockdevCreateOptionsSsh,
  vdi: BlockdevCreateOptionsVdi,
  vhdx: BlockdevCreateOptionsVhdx,
  vmdk: BlockdevCreateOptionsVmdk,
  vpc: BlockdevCreateOptionsVpc,
});

export const blockdevCreate = command('blockdev-create', { args: { 'job-id': str, options: BlockdevCreateOptions } });
