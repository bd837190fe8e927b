import { readFile } from 'node:fs/promises';
import { nodeCrypto } from '../image/lazy-builtins.js';
import { objectError, QomObject, type QomProperty } from './qom-object.js';


const BASE64_CHARS = /^[A-Za-z0-9+/=\n]*$/;

/** qbase64_decode: only base64 characters (and newlines), then GLib's lenient decoding. */
function base64Decode(text: string): Buffer {
  if (!BASE64_CHARS.test(text)) throw objectError('Base64 data contains invalid characters');
  return Buffer.from(text.replace(/\n/g, ''), 'base64');
}

/** Finds another secret's bytes (qcrypto_secret_lookup), for a secret encrypted with it. */
export type SecretLookup = (id: string) => Uint8Array;

/**
 * The `secret` object (crypto/secret.c, secret_common.c): bytes given
 * inline (`data`) or read from a file, raw or base64, optionally
 * AES-256-CBC encrypted with another secret (`keyid`, `iv`). Completing
 * loads and decodes them; luks keys and TLS credentials look them up.
 */
export class SecretObject extends QomObject {
  readonly typeName = 'secret';
  private format: 'raw' | 'base64' = 'raw';
  private keyid: string | undefined;
  private iv: string | undefined;
  private data: string | undefined;
  private file: string | undefined;
  /** The secret's bytes once loaded. */
  raw: Uint8Array | undefined;

  constructor(private readonly lookup: SecretLookup) {
    super();
  }

  protected ownGroups(): QomProperty[][] {
    const str = (name: string, get: () => string | undefined, set: (v: string) => void): QomProperty => ({ name, type: 'string', get: () => get() ?? '', set: (v) => set(v as string) });
    return [
      [str('data', () => this.data, (v) => (this.data = v)), str('file', () => this.file, (v) => (this.file = v))],
      [
        { name: 'loaded', type: 'bool', get: () => this.raw !== undefined },
        { name: 'format', type: 'QCryptoSecretFormat', get: () => this.format, set: (v) => (this.format = v as 'raw' | 'base64') },
        str('keyid', () => this.keyid, (v) => (this.keyid = v)),
        str('iv', () => this.iv, (v) => (this.iv = v)),
      ],
    ];
  }

  /** qcrypto_secret_complete: load, then decrypt (with keyid) or decode (base64). */
  override async complete(): Promise<void> {
    let input: Buffer;
    if (this.file !== undefined) {
      if (this.data !== undefined) throw objectError("'file' and 'data' are mutually exclusive");
      try {
        input = await readFile(this.file);
      } catch (err) {
        throw objectError(`Unable to read ${this.file}: ${gerrorText(err, this.file)}`);
      }
    } else if (this.data !== undefined) {
      input = Buffer.from(this.data, 'utf8');
    } else {
      throw objectError("Either 'file' or 'data' must be provided");
    }
    this.raw = this.keyid !== undefined ? this.decrypt(input, this.keyid) : this.format === 'base64' ? base64Decode(input.toString('latin1')) : input;
  }

  /** qcrypto_secret_decrypt */
  private decrypt(input: Buffer, keyid: string): Uint8Array {
    const key = this.lookup(keyid);
    if (key.length !== 32) throw objectError('Key should be 32 bytes in length');
    if (this.iv === undefined) throw objectError('IV is required to decrypt secret');
    const iv = base64Decode(this.iv);
    if (iv.length !== 16) throw objectError(`IV should be 16 bytes in length not ${iv.length}`);
    const ciphertext = this.format === 'base64' ? base64Decode(input.toString('latin1')) : input;
    const decipher = nodeCrypto().createDecipheriv('aes-256-cbc', key, iv);
    decipher.setAutoPadding(false);
    const plain = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    const pad = plain[plain.length - 1] ?? 0;
    if (pad > 16 || pad > plain.length) throw objectError(`Incorrect number of padding bytes (${pad}) found on decrypted data`);
    return plain.subarray(0, plain.length - pad);
  }
}

/** GLib's g_file_get_contents message for the common failures. */
function gerrorText(err: unknown, file: string): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `Failed to open file “${file}”: No such file or directory`;
  if (code === 'EACCES') return `Failed to open file “${file}”: Permission denied`;
  if (code === 'EISDIR') return `Failed to read from file “${file}”: Is a directory`;
  return (err as Error).message;
}
