import { rewriteHeader } from '../amend.js';
import type { Qcow2Image } from '../image.js';
import { type CreateEncryption, createLuksArea, creationKey } from '../../crypto/create.js';

const QCOW_CRYPT_AES = 1;
const QCOW_CRYPT_LUKS = 2;

/**
 * qcow2_set_up_encryption on a new, empty image (its last creation step):
 * legacy AES only marks the header; LUKS writes its area into clusters
 * allocated after everything else (zeroes first, as
 * qcow2_crypto_hdr_init_func leaves them), then the header names it.
 */
export async function setUpEncryption(img: Qcow2Image, enc: CreateEncryption): Promise<void> {
  const h = img.header;
  if (enc.format === 'aes') {
    await creationKey(enc);
    h.cryptMethod = QCOW_CRYPT_AES;
  } else {
    const area = await createLuksArea(enc);
    const cs = img.layout.clusterSize;
    const clusters = Math.ceil(area.bytes.length / cs);
    const first = await img.meta.run(() => img.refcounts!.allocate(clusters));
    const padded = new Uint8Array(clusters * cs);
    padded.set(area.bytes);
    await img.file.write(first * cs, padded);
    h.cryptMethod = QCOW_CRYPT_LUKS;
    h.cryptoHeader = { offset: first * cs, length: area.bytes.length };
  }
  await rewriteHeader(img);
}
