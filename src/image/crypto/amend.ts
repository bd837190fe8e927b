import { BlockError } from '../errors.js';
import { nodeCrypto } from '../lazy-builtins.js';
import { sealKeySlot } from './create.js';
import { findLuksKey, KEY_SLOTS, loadKeySlot, type LuksHeader, luksHeaderBytes, type LuksRead } from './luks.js';
import { CRYPT_SECTOR } from './sector-cipher.js';

/** QCryptoBlockAmendOptionsLUKS: a key slot to fill or to erase, and the secrets (by id) that says how. */
export interface LuksAmendOptions {
  state: 'active' | 'inactive';
  newSecret?: string;
  oldSecret?: string;
  keyslot?: number;
  iterTime?: number;
  /** The secret that unlocks the master key for a new slot (default: the one the image was opened with). */
  secret?: string;
}

/** Where the LUKS header and its key material are, and the secrets by id (qcrypto_secret_lookup_as_utf8). */
export interface LuksAmendIo {
  read: LuksRead;
  write: (offset: number, data: Uint8Array) => Promise<void>;
  secret: (id: string) => Promise<Uint8Array>;
  /** The password the image was opened with. */
  openedWith: () => Promise<Uint8Array>;
}

/** QCRYPTO_BLOCK_LUKS_ERASE_ITERATIONS: an erased slot's material is overwritten with random bytes this often. */
const ERASE_ITERATIONS = 40;

const fail = (message: string) => new BlockError('INVALID_ARGUMENT', message, { errno: 'EINVAL' });

/**
 * qcrypto_block_luks_amend_options: adds a key slot (a new password for
 * the master key an existing one unlocks) or erases slots (by index or by
 * the password they hold), with QEMU's checks and words; `force` lets an
 * active slot be overwritten and the last one be erased. The header in
 * `h` is updated as it is written.
 */
export async function amendLuksKeys(h: LuksHeader, io: LuksAmendIo, o: LuksAmendOptions, force: boolean): Promise<void> {
  if (o.state === 'active') await addKeySlot(h, io, o, force);
  else await eraseKeySlots(h, io, o, force);
}

async function addKeySlot(h: LuksHeader, io: LuksAmendIo, o: LuksAmendOptions, force: boolean): Promise<void> {
  if (o.newSecret === undefined) throw fail("'new-secret' is required to activate a keyslot");
  if (o.oldSecret !== undefined) throw fail("'old-secret' must not be given when activating keyslots");
  let slot: number;
  if (o.keyslot !== undefined) {
    slot = o.keyslot;
    if (slot < 0 || slot >= KEY_SLOTS) throw fail(`Invalid keyslot ${slot >>> 0} specified, must be between 0 and ${KEY_SLOTS - 1}`);
  } else {
    slot = h.slots.findIndex((s) => !s.active);
    if (slot < 0) throw fail("Can't add a keyslot - all keyslots are in use");
  }
  if (!force && h.slots[slot]!.active) throw fail(`Refusing to overwrite active keyslot ${slot} - please erase it first`);
  const old = o.secret !== undefined ? await io.secret(o.secret) : await io.openedWith();
  let masterKey: Uint8Array;
  try {
    masterKey = await findLuksKey(h, old, io.read);
  } catch (err) {
    throw withHint(err, 'Failed to retrieve the master key');
  }
  const password = await io.secret(o.newSecret);
  const s = h.slots[slot]!;
  const sealed = await sealKeySlot({ hash: h.hash, cipher: h.cipher, ivgen: h.ivgen, keyLen: h.masterKeyLen }, password, masterKey, o.iterTime ?? 2000);
  // The material first, then the header that makes the slot active (qcrypto_block_luks_store_key's order).
  await io.write(s.keyOffsetSector * CRYPT_SECTOR, sealed.material);
  s.salt = sealed.salt;
  s.iterations = sealed.iterations;
  s.active = true;
  await io.write(0, luksHeaderBytes(h));
}

async function eraseKeySlots(h: LuksHeader, io: LuksAmendIo, o: LuksAmendOptions, force: boolean): Promise<void> {
  if (o.newSecret !== undefined) throw fail("'new-secret' must not be given when erasing keyslots");
  if (o.iterTime !== undefined) throw fail("'iter-time' must not be given when erasing keyslots");
  if (o.secret !== undefined) throw fail("'secret' must not be given when erasing keyslots");
  const old = o.oldSecret !== undefined ? await io.secret(o.oldSecret) : undefined;
  const active = () => h.slots.filter((s) => s.active).length;
  if (o.keyslot !== undefined) {
    const slot = o.keyslot;
    if (slot < 0 || slot >= KEY_SLOTS) throw fail(`Invalid keyslot ${slot} specified, must be between 0 and ${KEY_SLOTS - 1}`);
    if (old && !(await loadKeySlot(h, slot, old, io.read))) throw fail(`Given keyslot ${slot} doesn't contain the given old password for erase operation`);
    if (!force && !h.slots[slot]!.active) throw fail(`Given keyslot ${slot} is already erased (inactive) `);
    if (!force && active() === 1) throw fail(`Attempt to erase the only active keyslot ${slot} which will erase all the data in the image irreversibly - refusing operation`);
    await eraseKeySlot(h, io, slot);
  } else if (old) {
    const matching: number[] = [];
    for (let i = 0; i < KEY_SLOTS; i++) if (await loadKeySlot(h, i, old, io.read)) matching.push(i);
    if (matching.length === 0) throw fail('No keyslots match given (old) password for erase operation');
    if (!force && matching.length === active()) {
      throw fail('All the active keyslots match the (old) password that was given and erasing them will erase all the data in the image irreversibly - refusing operation');
    }
    for (const i of matching) await eraseKeySlot(h, io, i);
  } else {
    throw fail('To erase keyslot(s), either explicit keyslot index or the password currently contained in them must be given');
  }
}

/** qcrypto_block_luks_erase_key: the slot's header entry reset and written, then its material overwritten with random bytes, again and again. */
async function eraseKeySlot(h: LuksHeader, io: LuksAmendIo, i: number): Promise<void> {
  const s = h.slots[i]!;
  s.salt = new Uint8Array(s.salt.length);
  s.iterations = 0;
  s.active = false;
  await io.write(0, luksHeaderBytes(h));
  const length = h.masterKeyLen * s.stripes;
  for (let n = 0; n < ERASE_ITERATIONS; n++) await io.write(s.keyOffsetSector * CRYPT_SECTOR, nodeCrypto().randomBytes(length));
}

/** error_append_hint: the hint shown on its own line under the message. */
function withHint(err: unknown, hint: string): unknown {
  if (!(err instanceof BlockError)) return err;
  return new BlockError(err.code, err.message, { errno: err.errno, cause: err, hint });
}
