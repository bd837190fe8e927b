import { BlockError } from '../../errors.js';
import { amendLuksKeys, type LuksAmendOptions } from '../../crypto/amend.js';
import type { Qcow2Image } from '../image.js';

/**
 * Whether encrypt.* options may be amended on this image
 * (qcow2_amend_options' checks, made before anything else is changed).
 */
export function checkEncryptionAmendable(img: Qcow2Image): void {
  if (img.header.cryptMethod === 0) throw new BlockError('INVALID_ARGUMENT', "Can't amend encryption options - encryption not present", { errno: 'EINVAL' });
  if (img.header.cryptMethod !== 2) throw new BlockError('UNSUPPORTED', 'Only LUKS encryption options can be amended', { errno: 'ENOTSUP' });
}

/**
 * qcow2_amend_options' encryption update: the LUKS key slots changed in
 * the crypto header's area (qcow2_crypto_hdr_read_func/_write_func,
 * bounded by the extension's length), unlocked with the image's key.
 */
export async function amendQcow2Encryption(img: Qcow2Image, o: LuksAmendOptions, force: boolean, secret: (id: string) => Promise<Uint8Array>): Promise<void> {
  checkEncryptionAmendable(img);
  const at = img.header.cryptoHeader;
  const h = img.luks;
  if (!at || !h) throw new BlockError('INVALID_ARGUMENT', 'Missing CRYPTO header for crypt method 2', { errno: 'EINVAL' });
  const bounded = (offset: number, length: number) => {
    if (offset + length > at.length) throw new BlockError('INVALID_ARGUMENT', 'Request for data outside of extension header', { errno: 'EINVAL' });
  };
  const key = img.encryption?.key;
  await amendLuksKeys(
    h,
    {
      read: (offset, length) => (bounded(offset, length), img.file.read(at.offset + offset, length)),
      write: async (offset, data) => (bounded(offset, data.length), img.file.write(at.offset + offset, data)),
      secret,
      openedWith: async () => {
        if (key === undefined) throw new BlockError('INVALID_ARGUMENT', "Parameter 'encrypt.key-secret' is required for cipher", { errno: 'EINVAL' });
        return typeof key === 'function' ? key() : key;
      },
    },
    o,
    force,
  );
  await img.file.flush();
}
