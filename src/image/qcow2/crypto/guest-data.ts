import type { ByteFile } from '../../byte-file.js';
import { BlockError } from '../../errors.js';
import { CRYPT_SECTOR, type SectorCipher } from '../../crypto/sector-cipher.js';

/** An encrypted image opened without its key (qemu-img info's metadata-only open) has no guest data to give. */
function noKey(): BlockError {
  return new BlockError('INVALID_ARGUMENT', 'the image is encrypted and was opened without its key', { errno: 'EIO' });
}

/**
 * Guest data from `file` at host offset `host` (guest offset `guest`),
 * decrypted when the image is encrypted: whole sectors are read and
 * decrypted (qcow2's request alignment is the cipher's sector), the part
 * asked for copied out.
 */
export async function readGuestData(file: ByteFile, c: SectorCipher | undefined, cryptMethod: number, dst: Uint8Array, host: number, guest: number): Promise<void> {
  if (!c) {
    if (cryptMethod !== 0) throw noKey();
    return file.readInto(dst, host);
  }
  const head = host % CRYPT_SECTOR;
  const bytes = Math.ceil((head + dst.length) / CRYPT_SECTOR) * CRYPT_SECTOR;
  const buf = head === 0 && bytes === dst.length ? dst : new Uint8Array(bytes);
  await file.readInto(buf, host - head);
  c.decryptInPlace(Math.floor((c.physical ? host : guest) / CRYPT_SECTOR), buf);
  if (buf !== dst) dst.set(buf.subarray(head, head + dst.length));
}

/** Guest data about to be written at host offset `host` (guest offset `guest`), whole sectors: encrypted copies when the image is encrypted. */
export function sealGuestData(c: SectorCipher | undefined, cryptMethod: number, bufs: Uint8Array[], host: number, guest: number): Uint8Array[] {
  if (!c) {
    if (cryptMethod !== 0) throw noKey();
    return bufs;
  }
  const all = bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs);
  return [c.encrypt((c.physical ? host : guest) / CRYPT_SECTOR, all)];
}
