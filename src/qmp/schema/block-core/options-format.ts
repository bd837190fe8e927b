/** Image format drivers' options (qapi/block-core.json 7.2): raw, qcow2, qcow, luks, and the generic formats. */
import { QCryptoBlockOptionsLUKS, QCryptoBlockOptionsQCow } from '../crypto.js';
import { alternate, bool, enumType, int, str, struct, union } from '../types.js';
import { BlockdevQcow2EncryptionFormat } from './common.js';
import { BlockdevRef, BlockdevRefOrNull } from './ref.js';

// QAPI struct bases, as member tables: a struct's members are its base's, then its own.
export const genericFormat = { file: BlockdevRef };
const genericCowFormat = { ...genericFormat, '*backing': BlockdevRefOrNull };

export const BlockdevOptionsGenericFormat = struct('BlockdevOptionsGenericFormat', genericFormat);
export const BlockdevOptionsGenericCOWFormat = struct('BlockdevOptionsGenericCOWFormat', genericCowFormat);
export const BlockdevOptionsLUKS = struct('BlockdevOptionsLUKS', { ...genericFormat, '*key-secret': str });
export const BlockdevOptionsRaw = struct('BlockdevOptionsRaw', { ...genericFormat, '*offset': int, '*size': int });

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

export const BlockdevQcowEncryptionFormat = enumType('BlockdevQcowEncryptionFormat', ['aes']);
export const BlockdevQcowEncryption = union('BlockdevQcowEncryption', { format: BlockdevQcowEncryptionFormat }, 'format', { aes: QCryptoBlockOptionsQCow });
export const BlockdevOptionsQcow = struct('BlockdevOptionsQcow', { ...genericCowFormat, '*encrypt': BlockdevQcowEncryption });

export const BlockdevQcow2Encryption = union('BlockdevQcow2Encryption', { format: BlockdevQcow2EncryptionFormat }, 'format', {
  aes: QCryptoBlockOptionsQCow,
  luks: QCryptoBlockOptionsLUKS,
});
export const BlockdevOptionsQcow2 = struct('BlockdevOptionsQcow2', {
  ...genericCowFormat,
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
  '*encrypt': BlockdevQcow2Encryption,
  '*data-file': BlockdevRef,
});
