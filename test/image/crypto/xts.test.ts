import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { XtsCipher } from '../../../src/image/crypto/xts.js';

/** Node's own AES-XTS, one 512-byte data unit per cipher object: the reference. */
function reference(name: 'aes-128-xts' | 'aes-256-xts', key: Uint8Array, ivs: Buffer, data: Uint8Array, decrypt: boolean): Buffer {
  const out = Buffer.alloc(data.length);
  for (let s = 0; s < data.length / 512; s++) {
    const iv = ivs.subarray(s * 16, s * 16 + 16);
    const c = (decrypt ? createDecipheriv : createCipheriv)(name, key, iv).setAutoPadding(false);
    const piece = Buffer.concat([c.update(data.subarray(s * 512, s * 512 + 512)), c.final()]);
    piece.copy(out, s * 512);
  }
  return out;
}

describe('XtsCipher (many sectors per AES pass)', () => {
  it('encrypts and decrypts as Node’s AES-XTS does sector by sector, at any alignment of the data', () => {
    fc.assert(
      fc.property(fc.constantFrom<'aes-128-xts' | 'aes-256-xts'>('aes-128-xts', 'aes-256-xts'), fc.integer({ min: 1, max: 9 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.integer({ min: 0, max: 3 }), (name, sectors, first, skew) => {
        const key = randomBytes(name === 'aes-128-xts' ? 32 : 64);
        // Two different halves (XTS refuses equal ones).
        key[0] = key[key.length / 2]! ^ 1;
        const ivs = Buffer.alloc(sectors * 16);
        for (let s = 0; s < sectors; s++) ivs.writeBigUInt64LE((first + BigInt(s)) % 2n ** 64n, s * 16);
        const backing = randomBytes(sectors * 512 + skew);
        const data = backing.subarray(skew);
        const x = new XtsCipher(key);
        const sealed = x.encrypt(ivs, data);
        expect(Buffer.from(sealed)).toEqual(reference(name, key, ivs, data, false));
        const copy = new Uint8Array(sealed);
        x.decryptInPlace(ivs, copy);
        expect(Buffer.from(copy)).toEqual(Buffer.from(data));
        expect(reference(name, key, ivs, sealed, true)).toEqual(Buffer.from(data));
      }),
      { numRuns: 60 },
    );
  });
});
