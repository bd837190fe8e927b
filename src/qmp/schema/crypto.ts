/** qapi/crypto.json (7.2): the encryption types that block-core's open options and image info refer to. */
import { array, bool, enumType, int, str, struct, union } from './types.js';

export const QCryptoCipherAlgorithm = enumType('QCryptoCipherAlgorithm', [
  'aes-128', 'aes-192', 'aes-256', 'des', '3des', 'cast5-128', 'serpent-128', 'serpent-192', 'serpent-256', 'twofish-128', 'twofish-192', 'twofish-256',
]);
export const QCryptoCipherMode = enumType('QCryptoCipherMode', ['ecb', 'cbc', 'xts', 'ctr']);
export const QCryptoIVGenAlgorithm = enumType('QCryptoIVGenAlgorithm', ['plain', 'plain64', 'essiv']);
export const QCryptoHashAlgorithm = enumType('QCryptoHashAlgorithm', ['md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'ripemd160']);
export const QCryptoBlockFormat = enumType('QCryptoBlockFormat', ['qcow', 'luks']);

export const QCryptoBlockOptionsQCow = struct('QCryptoBlockOptionsQCow', { '*key-secret': str });
export const QCryptoBlockOptionsLUKS = struct('QCryptoBlockOptionsLUKS', { '*key-secret': str });

export const QCryptoBlockInfoLUKSSlot = struct('QCryptoBlockInfoLUKSSlot', { active: bool, '*iters': int, '*stripes': int, 'key-offset': int });
export const QCryptoBlockInfoLUKS = struct('QCryptoBlockInfoLUKS', {
  'cipher-alg': QCryptoCipherAlgorithm,
  'cipher-mode': QCryptoCipherMode,
  'ivgen-alg': QCryptoIVGenAlgorithm,
  '*ivgen-hash-alg': QCryptoHashAlgorithm,
  'hash-alg': QCryptoHashAlgorithm,
  'payload-offset': int,
  'master-key-iters': int,
  uuid: str,
  slots: array(QCryptoBlockInfoLUKSSlot),
});

/** What blockdev-create takes for an encrypted image (qcow's aes, or LUKS with its algorithms). */
export const luksCreateMembers = {
  '*key-secret': str,
  '*cipher-alg': QCryptoCipherAlgorithm,
  '*cipher-mode': QCryptoCipherMode,
  '*ivgen-alg': QCryptoIVGenAlgorithm,
  '*ivgen-hash-alg': QCryptoHashAlgorithm,
  '*hash-alg': QCryptoHashAlgorithm,
  '*iter-time': int,
};
export const QCryptoBlockCreateOptionsLUKS = struct('QCryptoBlockCreateOptionsLUKS', luksCreateMembers);
export const QCryptoBlockCreateOptions = union('QCryptoBlockCreateOptions', { format: QCryptoBlockFormat }, 'format', {
  qcow: QCryptoBlockOptionsQCow,
  luks: QCryptoBlockCreateOptionsLUKS,
});
