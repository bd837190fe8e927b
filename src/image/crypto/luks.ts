import { BlockError } from '../errors.js';
import { nodeCrypto } from '../lazy-builtins.js';
import { afMerge } from './af-split.js';
import { type CipherName, CRYPT_SECTOR, type IvGenerator, SectorCipher } from './sector-cipher.js';

/** PBKDF2 on libuv's pool, node:crypto loaded at the first use. */
export const pbkdf2Async = (...a: Parameters<typeof import('node:crypto').pbkdf2Sync>): Promise<Buffer> =>
  new Promise((resolve, reject) => nodeCrypto().pbkdf2(...a, (err, key) => (err ? reject(err) : resolve(key))));

const MAGIC = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]); // "LUKS\xba\xbe"
/** The header and its 8 key slots: 592 bytes (QCryptoBlockLUKSHeader). */
export const LUKS_HEADER_BYTES = 592;
/** LUKS1's layout constants (crypto/block-luks-priv.h), shared by reading, creating and amending headers. */
export const KEY_SLOTS = 8;
export const SLOT_ENABLED = 0x00ac71f3;
export const SLOT_DISABLED = 0x0000dead;
export const STRIPES = 4000;
/** Where key material may start: past the header, rounded to 4 KiB (QCRYPTO_BLOCK_LUKS_KEY_SLOT_OFFSET). */
export const KEY_SLOT_OFFSET = 4096;
export const DIGEST_LEN = 20;

export interface LuksKeySlot {
  active: boolean;
  iterations: number;
  salt: Uint8Array;
  keyOffsetSector: number;
  stripes: number;
}

/** A LUKS1 header as QEMU's qcrypto_block_luks reads it, with its cipher worked out. */
export interface LuksHeader {
  cipherName: string;
  cipherMode: string;
  hashSpec: string;
  payloadOffsetSector: number;
  masterKeyLen: number;
  mkDigest: Uint8Array;
  mkDigestSalt: Uint8Array;
  mkDigestIterations: number;
  uuid: string;
  slots: LuksKeySlot[];
  /** What the cipher fields name, in Node's and QEMU's words. */
  cipher: CipherName;
  cipherAlg: string;
  mode: 'xts' | 'cbc';
  ivgen: IvGenerator;
  hash: string;
  /** The header's bytes as read: what a key slot change writes back, its slots updated (luksHeaderBytes). */
  raw: Uint8Array;
}

const fail = (message: string) => new BlockError('INVALID_IMAGE', message, { errno: 'EINVAL' });

function cString(b: Buffer, what: string): string {
  const nul = b.indexOf(0);
  if (nul < 0) throw fail(`LUKS header ${what} is not NUL terminated`);
  return b.subarray(0, nul).toString('latin1');
}

/** The hashes LUKS headers name that Node's crypto computes. */
export const LUKS_HASHES = new Set(['md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'ripemd160']);

/** qcrypto_block_luks_check_header and _parse_header: the header's checks and its cipher, in QEMU's words. */
export function parseLuksHeader(bytes: Uint8Array): LuksHeader {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < LUKS_HEADER_BYTES || !b.subarray(0, 6).equals(MAGIC)) throw fail('Volume is not in LUKS format');
  const version = b.readUInt16BE(6);
  if (version !== 1) throw fail(`LUKS version ${version} is not supported`);
  const cipherName = cString(b.subarray(8, 40), 'cipher name');
  const cipherMode = cString(b.subarray(40, 72), 'cipher mode');
  const hashSpec = cString(b.subarray(72, 104), 'hash spec');
  const payloadOffsetSector = b.readUInt32BE(104);
  const masterKeyLen = b.readUInt32BE(108);
  const mkDigest = b.subarray(112, 132);
  const mkDigestSalt = b.subarray(132, 164);
  const mkDigestIterations = b.readUInt32BE(164);
  const uuid = b.subarray(168, 208).toString('latin1').replace(/\0.*$/s, '');
  const slots: LuksKeySlot[] = [];
  for (let i = 0; i < KEY_SLOTS; i++) {
    const s = 208 + i * 48;
    const active = b.readUInt32BE(s);
    slots.push({ active: active === SLOT_ENABLED, iterations: b.readUInt32BE(s + 4), salt: b.subarray(s + 8, s + 40), keyOffsetSector: b.readUInt32BE(s + 40), stripes: b.readUInt32BE(s + 44) });
    if (active !== SLOT_ENABLED && active !== SLOT_DISABLED) throw fail(`Keyslot ${i} state (active/disable) is corrupted`);
  }
  const headerSectors = KEY_SLOT_OFFSET / CRYPT_SECTOR;
  if (payloadOffsetSector < headerSectors) throw fail('LUKS payload is overlapping with the header');
  if (mkDigestIterations === 0) throw fail('LUKS key iteration count is zero');
  const splitSectors = (stripes: number) => Math.ceil((masterKeyLen * stripes) / CRYPT_SECTOR);
  slots.forEach((s, i) => {
    if (s.stripes !== STRIPES) throw fail(`Keyslot ${i} is corrupted (stripes ${s.stripes} != ${STRIPES})`);
    if (s.active && s.iterations === 0) throw fail(`Keyslot ${i} iteration count is zero`);
    if (s.keyOffsetSector < headerSectors) throw fail(`Keyslot ${i} is overlapping with the LUKS header`);
    if (s.keyOffsetSector + splitSectors(s.stripes) > payloadOffsetSector) throw fail(`Keyslot ${i} is overlapping with the encrypted payload`);
    for (let j = i + 1; j < KEY_SLOTS; j++) {
      const t = slots[j]!;
      if (s.keyOffsetSector + splitSectors(s.stripes) > t.keyOffsetSector && t.keyOffsetSector + splitSectors(t.stripes) > s.keyOffsetSector) {
        throw fail(`Keyslots ${i} and ${j} are overlapping in the header`);
      }
    }
  });
  const dash = cipherMode.indexOf('-');
  if (dash < 0) throw fail(`Unexpected cipher mode string format '${cipherMode}'`);
  const mode = cipherMode.slice(0, dash);
  const ivgen = cipherMode.slice(dash + 1).split(':')[0]!;
  if (mode !== 'xts' && mode !== 'cbc') throw unsupported(`LUKS cipher mode '${mode}'`);
  if (cipherName !== 'aes') throw unsupported(`LUKS cipher '${cipherName}'`);
  if (ivgen !== 'plain' && ivgen !== 'plain64') throw unsupported(`LUKS IV generator '${ivgen}'`);
  if (!LUKS_HASHES.has(hashSpec)) throw fail(`Unsupported hash '${hashSpec}'`);
  const bits = (mode === 'xts' ? masterKeyLen / 2 : masterKeyLen) * 8;
  const cipher = `aes-${bits}-${mode}`;
  if (!['aes-128-cbc', 'aes-192-cbc', 'aes-256-cbc', 'aes-128-xts', 'aes-256-xts'].includes(cipher)) throw fail(`Unsupported cipher '${cipherName}' with key size ${masterKeyLen}`);
  return {
    cipherName,
    cipherMode,
    hashSpec,
    payloadOffsetSector,
    masterKeyLen,
    mkDigest,
    mkDigestSalt,
    mkDigestIterations,
    uuid,
    slots,
    cipher: cipher as CipherName,
    cipherAlg: `aes-${bits}`,
    mode,
    ivgen,
    hash: hashSpec,
    raw: new Uint8Array(b.subarray(0, LUKS_HEADER_BYTES)),
  };
}

/** The header as qcrypto_block_luks_store_header writes it: as read, with the key slots as they are now. */
export function luksHeaderBytes(h: LuksHeader): Uint8Array {
  const out = Buffer.from(h.raw);
  h.slots.forEach((s, i) => {
    const at = 208 + i * 48;
    out.writeUInt32BE(s.active ? SLOT_ENABLED : SLOT_DISABLED, at);
    out.writeUInt32BE(s.iterations, at + 4);
    out.set(s.salt, at + 8);
    out.writeUInt32BE(s.keyOffsetSector, at + 40);
    out.writeUInt32BE(s.stripes, at + 44);
  });
  return out;
}

function unsupported(what: string): BlockError {
  return new BlockError('UNSUPPORTED', `${what} is not supported by blockemu (LUKS with AES in XTS or CBC mode and a plain or plain64 IV is)`, { errno: 'ENOTSUP' });
}

/** Reads `length` bytes at `offset` from the start of the LUKS header (key material). */
export type LuksRead = (offset: number, length: number) => Promise<Uint8Array>;

/**
 * qcrypto_block_luks_load_key: the master key if slot `i` is active and
 * the password opens it (PBKDF2 of the password with the slot's salt, the
 * slot's split key decrypted with it, merged, and checked against the
 * header's digest of the master key), else undefined.
 */
export async function loadKeySlot(h: LuksHeader, i: number, password: Uint8Array, read: LuksRead): Promise<Uint8Array | undefined> {
  const slot = h.slots[i]!;
  if (!slot.active) return undefined;
  const slotKey = await pbkdf2Async(password, slot.salt, slot.iterations, h.masterKeyLen, h.hash);
  const split = new Uint8Array(await read(slot.keyOffsetSector * CRYPT_SECTOR, h.masterKeyLen * slot.stripes));
  // The split key is encrypted as the payload is, sector by sector from sector 0 of the material.
  new SectorCipher(h.cipher, slotKey, h.ivgen, true).decryptInPlace(0, padToSector(split));
  const candidate = afMerge(h.hash, h.masterKeyLen, slot.stripes, split);
  const digest = await pbkdf2Async(candidate, h.mkDigestSalt, h.mkDigestIterations, DIGEST_LEN, h.hash);
  return Buffer.compare(digest, Buffer.from(h.mkDigest)) === 0 ? candidate : undefined;
}

/** qcrypto_block_luks_find_key: the master key the password unlocks, tried on each slot in turn. */
export async function findLuksKey(h: LuksHeader, password: Uint8Array, read: LuksRead): Promise<Uint8Array> {
  for (let i = 0; i < h.slots.length; i++) {
    const key = await loadKeySlot(h, i, password, read);
    if (key) return key;
  }
  throw new BlockError('INVALID_ARGUMENT', 'Invalid password, cannot unlock any keyslot', { errno: 'EINVAL' });
}

/** The payload's cipher under the master key the password unlocks. */
export async function unlockLuks(h: LuksHeader, password: Uint8Array, read: LuksRead): Promise<SectorCipher> {
  return new SectorCipher(h.cipher, await findLuksKey(h, password, read), h.ivgen, true);
}

/** The split key's last sector may be partial: decrypted as QEMU does, a whole sector at a time (the rest is never used). */
function padToSector(b: Uint8Array): Uint8Array {
  const whole = Math.floor(b.length / CRYPT_SECTOR) * CRYPT_SECTOR;
  return b.subarray(0, whole);
}
