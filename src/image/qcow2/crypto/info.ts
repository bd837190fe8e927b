import type { EncryptInfo } from '../../types.js';
import { CRYPT_SECTOR } from './sector-cipher.js';
import type { LuksHeader } from './luks.js';

/** qcrypto_block_get_info as qcow2 reports it: the format, and for LUKS what its header says (an image opened for its metadata has read it too). */
export function encryptInfo(cryptMethod: number, luks: LuksHeader | undefined): EncryptInfo | undefined {
  if (cryptMethod === 1) return { format: 'aes' };
  if (cryptMethod !== 2 || !luks) return undefined;
  return {
    format: 'luks',
    cipherAlg: luks.cipherAlg,
    cipherMode: luks.mode,
    ivgenAlg: luks.ivgen,
    hashAlg: luks.hash,
    uuid: luks.uuid,
    payloadOffset: luks.payloadOffsetSector * CRYPT_SECTOR,
    masterKeyIters: luks.mkDigestIterations,
    slots: luks.slots.map((s) => (s.active ? { active: true, iters: s.iterations, stripes: s.stripes, keyOffset: s.keyOffsetSector * CRYPT_SECTOR } : { active: false, keyOffset: s.keyOffsetSector * CRYPT_SECTOR })),
  };
}
