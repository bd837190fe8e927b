import { nodeCrypto } from '../lazy-builtins.js';
import { XtsCipher } from './xts.js';

/** 512-byte sectors: the unit QEMU's qcow2 encryption (legacy AES and LUKS alike) encrypts with an IV of its own. */
export const CRYPT_SECTOR = 512;

/** The block ciphers blockemu encrypts with, as Node names them. */
export type CipherName = 'aes-128-cbc' | 'aes-192-cbc' | 'aes-256-cbc' | 'aes-128-xts' | 'aes-256-xts';

/** How a sector's IV is made from its number (QEMU's ivgen plain: its low 32 bits; plain64: all of it), little-endian. */
export type IvGenerator = 'plain' | 'plain64';

/**
 * A cipher that encrypts data sector by sector, each sector with the IV its
 * number gives (qcrypto_block_cipher_encrypt_helper). `physical`: the
 * sector numbers count host offsets in the file (LUKS), else guest offsets
 * (legacy AES), as qcow2's crypt_physical_offset says.
 */
export class SectorCipher {
  /** XTS runs many sectors per AES pass (xts.ts); CBC goes sector by sector through Node's cipher. */
  private readonly xts: XtsCipher | undefined;

  constructor(
    readonly cipher: CipherName,
    private readonly key: Uint8Array,
    readonly ivgen: IvGenerator,
    readonly physical: boolean,
  ) {
    this.xts = cipher.endsWith('-xts') ? new XtsCipher(key) : undefined;
  }

  /** `data` (whole sectors) encrypted, as a new buffer: the caller's bytes (maybe a shared zero chunk) are not touched. */
  encrypt(firstSector: number, data: Uint8Array): Uint8Array {
    if (this.xts) return this.xts.encrypt(this.ivs(firstSector, data.length), data);
    const out = new Uint8Array(data.length);
    for (let off = 0; off < data.length; off += CRYPT_SECTOR) {
      const c = nodeCrypto().createCipheriv(this.cipher, this.key, this.iv(firstSector + off / CRYPT_SECTOR)).setAutoPadding(false);
      const sector = data.subarray(off, off + CRYPT_SECTOR);
      const n = c.update(sector).copy(out, off);
      c.final().copy(out, off + n);
    }
    return out;
  }

  /** Decrypts whole sectors of `data` in place. */
  decryptInPlace(firstSector: number, data: Uint8Array): void {
    if (this.xts) return this.xts.decryptInPlace(this.ivs(firstSector, data.length), data);
    for (let off = 0; off < data.length; off += CRYPT_SECTOR) {
      const d = nodeCrypto().createDecipheriv(this.cipher, this.key, this.iv(firstSector + off / CRYPT_SECTOR)).setAutoPadding(false);
      const sector = data.subarray(off, off + CRYPT_SECTOR);
      const plain = Buffer.concat([d.update(sector), d.final()]);
      sector.set(plain);
    }
  }

  /** The IVs of the sectors `length` bytes from `firstSector` cover, back to back. */
  private ivs(firstSector: number, length: number): Buffer {
    const n = length / CRYPT_SECTOR;
    const out = Buffer.alloc(n * 16);
    for (let s = 0; s < n; s++) {
      const sector = firstSector + s;
      if (this.ivgen === 'plain') out.writeUInt32LE(sector % 2 ** 32, s * 16);
      else out.writeBigUInt64LE(BigInt(sector), s * 16);
    }
    return out;
  }

  private iv(sector: number): Buffer {
    const iv = Buffer.alloc(16);
    if (this.ivgen === 'plain') iv.writeUInt32LE(sector % 2 ** 32, 0);
    else iv.writeBigUInt64LE(BigInt(sector), 0);
    return iv;
  }
}
