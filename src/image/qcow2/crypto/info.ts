import type { EncryptInfo } from '../../types.js';
import { luksInfo } from '../../crypto/info.js';
import type { LuksHeader } from '../../crypto/luks.js';

/** qcrypto_block_get_info as qcow2 reports it: the format, and for LUKS what its header says (an image opened for its metadata has read it too). */
export function encryptInfo(cryptMethod: number, luks: LuksHeader | undefined): EncryptInfo | undefined {
  if (cryptMethod === 1) return { format: 'aes' };
  if (cryptMethod !== 2 || !luks) return undefined;
  return luksInfo(luks);
}
