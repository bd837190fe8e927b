import type { ByteFile } from '../../byte-file.js';
import { BlockError } from '../../errors.js';
import type { Qcow2Header } from '../header.js';
import { LUKS_HEADER_BYTES, type LuksHeader, parseLuksHeader, unlockLuks } from '../../crypto/luks.js';
import { SectorCipher } from '../../crypto/sector-cipher.js';

/** The encrypt.* options an image is opened with. */
export interface EncryptionOptions {
  /** encrypt.format, when given: it must be the header's. */
  format?: string;
  /** The bytes of the secret encrypt.key-secret names (its UTF-8 password), looked up when the image needs them. */
  key?: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
  /** Legacy AES is refused, as system emulators and qemu-storage-daemon refuse it (bdrv_uses_whitelist). */
  refuseAes?: boolean;
}

/**
 * The encrypt.* options of a node's flat options (encrypt.format,
 * encrypt.key-secret), the secret looked up with `lookup` only when the
 * image turns out to need it.
 */
export function encryptionFromOptions(flat: Readonly<Record<string, unknown>>, lookup: (id: string) => Uint8Array | Promise<Uint8Array>, refuseAes = false): EncryptionOptions {
  const format = flat['encrypt.format'];
  const secret = flat['encrypt.key-secret'];
  return {
    ...(typeof format === 'string' ? { format } : {}),
    ...(typeof secret === 'string' ? { key: () => lookup(secret) } : {}),
    refuseAes,
  };
}

/** What an encrypted image opens with: the cipher for guest data (none when only metadata is wanted), the LUKS header for info. */
export interface Qcow2Crypto {
  cipher?: SectorCipher;
  luks?: LuksHeader;
}

const QCOW_CRYPT_AES = 1;
const QCOW_CRYPT_LUKS = 2;

const invalid = (message: string) => new BlockError('INVALID_ARGUMENT', message, { errno: 'EINVAL' });

/**
 * qcow2_do_open's encryption steps, in its order and words: the format
 * option checked against the header (qcow2_update_options_prepare), then
 * the LUKS header read from where the crypto extension points and its key
 * slots unlocked with the password, or the legacy AES key made from it.
 * `metadataOnly` (qemu-img info's BDRV_O_NO_IO): nothing is unlocked.
 */
export async function openQcow2Crypto(file: ByteFile, h: Qcow2Header, opts: EncryptionOptions, metadataOnly: boolean): Promise<Qcow2Crypto | undefined> {
  const fmt = opts.format;
  switch (h.cryptMethod) {
    case 0:
      if (fmt !== undefined) throw invalid(`No encryption in image header, but options specified format '${fmt}'`);
      return undefined;
    case QCOW_CRYPT_AES:
      if (fmt !== undefined && fmt !== 'aes') throw invalid(`Header reported 'aes' encryption format but options specify '${fmt}'`);
      if (opts.refuseAes) {
        throw new BlockError('UNSUPPORTED', 'Use of AES-CBC encrypted qcow2 images is no longer supported in system emulators', {
          errno: 'ENOSYS',
          hint: "You can use 'qemu-img convert' to convert your image to an alternative supported format, such as unencrypted qcow2, or raw with the LUKS format instead.\n",
        });
      }
      if (metadataOnly) return {};
      return { cipher: legacyAesCipher(await password(opts)) };
    case QCOW_CRYPT_LUKS: {
      if (fmt !== undefined && fmt !== 'luks') throw invalid(`Header reported 'luks' encryption format but options specify '${fmt}'`);
      const at = h.cryptoHeader;
      if (!at) {
        if (metadataOnly) return {};
        throw invalid('Missing CRYPTO header for crypt method 2');
      }
      if (at.offset % 2 ** h.clusterBits !== 0) throw invalid(`Encryption header offset '${at.offset}' is not a multiple of cluster size '${2 ** h.clusterBits}'`);
      const key = metadataOnly ? undefined : await password(opts);
      const read = async (offset: number, length: number) => {
        if (offset + length > at.length) throw invalid(`Request for data outside of extension header`);
        return file.read(at.offset + offset, length);
      };
      const luks = parseLuksHeader(await read(0, LUKS_HEADER_BYTES));
      if (metadataOnly) return { luks };
      return { luks, cipher: await unlockLuks(luks, key!, read) };
    }
    default:
      throw invalid(`Unsupported encryption method ${h.cryptMethod}`);
  }
}

/** The password, checked for and looked up as the crypto layer does before it reads anything. */
async function password(opts: EncryptionOptions): Promise<Uint8Array> {
  if (opts.key === undefined) throw invalid("Parameter 'encrypt.key-secret' is required for cipher");
  return typeof opts.key === 'function' ? opts.key() : opts.key;
}

/** qcrypto_block_qcow_init: AES-128-CBC keyed with the password's first 16 bytes (zero-padded), IVs from guest sectors. */
export function legacyAesCipher(password: Uint8Array): SectorCipher {
  const nul = password.indexOf(0);
  const text = nul < 0 ? password : password.subarray(0, nul);
  const key = new Uint8Array(16);
  key.set(text.subarray(0, 16));
  return new SectorCipher('aes-128-cbc', key, 'plain64', false);
}
