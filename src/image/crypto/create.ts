import { BlockError } from '../errors.js';
import { nodeCrypto } from '../lazy-builtins.js';
import { afSplit } from './af-split.js';
import { DIGEST_LEN, KEY_SLOT_OFFSET, KEY_SLOTS, LUKS_HASHES, LUKS_HEADER_BYTES, pbkdf2Async, SLOT_DISABLED, SLOT_ENABLED, STRIPES } from './luks.js';
import { type CipherName, CRYPT_SECTOR, type IvGenerator, SectorCipher } from './sector-cipher.js';

/** An image's encryption as creation asks for it (the encrypt.* options; the secret already looked up). */
export interface CreateEncryption {
  format: 'aes' | 'luks';
  /** The password (the secret's bytes, or how to look them up when needed); creation fails without one, as QEMU's does. */
  key?: Uint8Array | (() => Promise<Uint8Array>);
  cipherAlg?: string;
  cipherMode?: string;
  ivgenAlg?: string;
  ivgenHashAlg?: string;
  hashAlg?: string;
  /** Milliseconds of PBKDF2 to spend on each key (default 2000, as QEMU). */
  iterTime?: number;
  /** What the options are called in messages: `encrypt.` under qcow2 (the default), nothing for the luks format. */
  optPrefix?: string;
}

const invalid = (message: string) => new BlockError('INVALID_ARGUMENT', message, { errno: 'EINVAL' });
const unsupported = (message: string) => new BlockError('UNSUPPORTED', message, { errno: 'ENOTSUP' });

const SALT_LEN = 32;
const HEADER_SECTORS = KEY_SLOT_OFFSET / CRYPT_SECTOR;
const MIN_ITERS = 1000;

/** The password, as qcrypto_block_*_create requires it. */
export async function creationKey(enc: CreateEncryption): Promise<Uint8Array> {
  if (!enc.key) throw invalid(`Parameter '${enc.optPrefix ?? 'encrypt.'}key-secret' is required for cipher`);
  return typeof enc.key === 'function' ? enc.key() : enc.key;
}

/**
 * qcrypto_pbkdf2_count_iters: how many PBKDF2 iterations a second buys
 * here, measured as QEMU measures it (grown until a run takes half a
 * second). Wall time on libuv's pool, so a daemon is not held up.
 */
async function iterationsPerSecond(hash: string, key: Uint8Array, salt: Uint8Array, outLen: number): Promise<number> {
  let iterations = 1 << 15;
  for (;;) {
    const start = performance.now();
    await pbkdf2Async(key, salt, iterations, outLen, hash);
    const ms = Math.max(1, performance.now() - start);
    if (ms > 500) return Math.floor((iterations * 1000) / ms);
    iterations = ms < 100 ? iterations * 10 : Math.floor((iterations * 1000) / ms);
  }
}

/** The LUKS area qcrypto_block_luks_create writes: header, slot 0's key material, zeroes up to the payload offset. */
export interface LuksArea {
  bytes: Uint8Array;
  /** The parts of it qcrypto_block_luks_create writes (the header, then slot 0's key material); the rest is left as the file has it. */
  written: { offset: number; length: number }[];
}

/**
 * qcrypto_block_luks_create: a random master key, its PBKDF2 digest, key
 * slot 0 holding it AF-split and encrypted under the password, slots 1-7
 * disabled, each slot's material rounded to the header's 8 sectors.
 * Algorithms default to QEMU's (aes-256, xts, plain64, sha256).
 */
export async function createLuksArea(enc: CreateEncryption): Promise<LuksArea> {
  const password = await creationKey(enc);
  const alg = enc.cipherAlg ?? 'aes-256';
  const mode = enc.cipherMode ?? 'xts';
  const ivgen = enc.ivgenAlg ?? 'plain64';
  const hash = enc.hashAlg ?? 'sha256';
  const iterTime = enc.iterTime ?? 2000;
  const bits = /^aes-(128|192|256)$/.exec(alg)?.[1];
  if (!bits) throw unsupported(`Cipher '${alg}' is not supported by blockemu (aes-128, aes-192 and aes-256 are)`);
  if (mode !== 'xts' && mode !== 'cbc') throw unsupported(`Cipher mode '${mode}' is not supported by blockemu (xts and cbc are)`);
  if (mode === 'xts' && bits === '192') throw unsupported('Cipher aes-192 in xts mode is not supported by blockemu');
  if (ivgen !== 'plain' && ivgen !== 'plain64') throw unsupported(`IV generator '${ivgen}' is not supported by blockemu (plain and plain64 are)`);
  if (!LUKS_HASHES.has(hash)) throw invalid(`Hash algorithm '${hash}' is not supported`);
  if (iterTime <= 0) throw invalid('PBKDF iteration time must be positive');
  const keyLen = (Number(bits) / 8) * (mode === 'xts' ? 2 : 1);
  const cipher = `aes-${bits}-${mode}` as CipherName;
  const masterKey = nodeCrypto().randomBytes(keyLen);

  const splitSectors = Math.ceil(Math.ceil((keyLen * STRIPES) / CRYPT_SECTOR) / HEADER_SECTORS) * HEADER_SECTORS;
  const payloadSectors = HEADER_SECTORS + KEY_SLOTS * splitSectors;
  const area = new Uint8Array(payloadSectors * CRYPT_SECTOR);
  const h = Buffer.from(area.buffer, 0, LUKS_HEADER_BYTES);
  h.set([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe], 0);
  h.writeUInt16BE(1, 6);
  h.write('aes', 8, 'latin1');
  h.write(`${mode}-${ivgen}`, 40, 'latin1');
  h.write(hash, 72, 'latin1');
  h.writeUInt32BE(payloadSectors, 104);
  h.writeUInt32BE(keyLen, 108);

  // The master key's digest, at an eighth of the iterations a second's worth of time buys (as cryptsetup).
  const mkSalt = nodeCrypto().randomBytes(SALT_LEN);
  const mkRate = await iterationsPerSecond(hash, masterKey, mkSalt, DIGEST_LEN);
  const mkIters = Math.max(Math.floor((mkRate * iterTime) / 1000 / 8), MIN_ITERS);
  if (mkIters > 0xffffffff) throw invalid(`PBKDF iterations ${mkIters} larger than 4294967295`);
  h.set(await pbkdf2Async(masterKey, mkSalt, mkIters, DIGEST_LEN, hash), 112);
  h.set(mkSalt, 132);
  h.writeUInt32BE(mkIters, 164);
  h.write(nodeCrypto().randomUUID(), 168, 'latin1');

  for (let i = 0; i < KEY_SLOTS; i++) {
    const s = 208 + i * 48;
    h.writeUInt32BE(SLOT_DISABLED, s);
    h.writeUInt32BE(HEADER_SECTORS + i * splitSectors, s + 40);
    h.writeUInt32BE(STRIPES, s + 44);
  }

  // Slot 0: the password's key (its own iteration count), the master key split and encrypted under it.
  const slot = await sealKeySlot({ hash, cipher, ivgen, keyLen }, password, masterKey, iterTime);
  area.set(slot.material, HEADER_SECTORS * CRYPT_SECTOR);
  h.writeUInt32BE(SLOT_ENABLED, 208);
  h.writeUInt32BE(slot.iterations, 212);
  h.set(slot.salt, 216);
  return { bytes: area, written: [{ offset: 0, length: LUKS_HEADER_BYTES }, { offset: HEADER_SECTORS * CRYPT_SECTOR, length: slot.material.length }] };
}

/** What a key slot is sealed with: the header's algorithms. */
export interface SlotCipher {
  hash: string;
  cipher: CipherName;
  ivgen: IvGenerator;
  keyLen: number;
}

/**
 * qcrypto_block_luks_store_key's key material: a fresh salt, the
 * iterations `iterTime` milliseconds of PBKDF2 buy here (at least 1000),
 * and the master key AF-split and encrypted under the password's key.
 */
export async function sealKeySlot(c: SlotCipher, password: Uint8Array, masterKey: Uint8Array, iterTime: number): Promise<{ salt: Uint8Array; iterations: number; material: Uint8Array }> {
  const salt = nodeCrypto().randomBytes(SALT_LEN);
  const rate = await iterationsPerSecond(c.hash, password, salt, c.keyLen);
  const iterations = Math.max(Math.floor((rate * iterTime) / 1000), MIN_ITERS);
  if (iterations > 0xffffffff) throw invalid(`PBKDF iterations ${iterations} larger than 4294967295`);
  const slotKey = await pbkdf2Async(password, salt, iterations, c.keyLen, c.hash);
  const split = afSplit(c.hash, masterKey, STRIPES, (n) => nodeCrypto().randomBytes(n));
  const whole = new Uint8Array(Math.ceil(split.length / CRYPT_SECTOR) * CRYPT_SECTOR);
  whole.set(split);
  return { salt, iterations, material: new SectorCipher(c.cipher, slotKey, c.ivgen, true).encrypt(0, whole).subarray(0, split.length) };
}
