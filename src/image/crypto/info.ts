import type { EncryptInfo } from '../types.js';
import type { LuksHeader } from './luks.js';
import { CRYPT_SECTOR } from './sector-cipher.js';

/** qcrypto_block_get_info for LUKS: what its header says (QCryptoBlockInfoLUKS), for qcow2's `encrypt` block and the luks format alike. */
export function luksInfo(luks: LuksHeader): Extract<EncryptInfo, { format: 'luks' }> {
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
