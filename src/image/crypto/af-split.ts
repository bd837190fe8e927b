import { nodeCrypto } from '../lazy-builtins.js';

/**
 * LUKS's anti-forensic splitter (crypto/afsplit.c): a key spread over
 * `stripes` blocks so that losing any one of them loses the key. Merging
 * XORs the stripes in, diffusing the running block through the hash after
 * each but the last.
 */
function diffuse(hash: string, block: Uint8Array): void {
  const digestLen = nodeCrypto().createHash(hash).digest().length;
  for (let i = 0; i * digestLen < block.length; i++) {
    const chunk = block.subarray(i * digestLen, Math.min(block.length, (i + 1) * digestLen));
    const index = Buffer.alloc(4);
    index.writeUInt32BE(i);
    chunk.set(nodeCrypto().createHash(hash).update(index).update(chunk).digest().subarray(0, chunk.length));
  }
}

function xorInto(dst: Uint8Array, src: Uint8Array): void {
  for (let i = 0; i < dst.length; i++) dst[i]! ^= src[i]!;
}

/** qcrypto_afsplit_decode: the key of `keyLen` bytes from its split form. */
export function afMerge(hash: string, keyLen: number, stripes: number, split: Uint8Array): Uint8Array {
  const block = new Uint8Array(keyLen);
  for (let i = 0; i < stripes - 1; i++) {
    xorInto(block, split.subarray(i * keyLen, (i + 1) * keyLen));
    diffuse(hash, block);
  }
  xorInto(block, split.subarray((stripes - 1) * keyLen, stripes * keyLen));
  return block;
}

/** qcrypto_afsplit_encode: `key` spread over `stripes` blocks, all but the last random. */
export function afSplit(hash: string, key: Uint8Array, stripes: number, random: (n: number) => Uint8Array): Uint8Array {
  const keyLen = key.length;
  const split = new Uint8Array(keyLen * stripes);
  const block = new Uint8Array(keyLen);
  for (let i = 0; i < stripes - 1; i++) {
    const stripe = random(keyLen);
    split.set(stripe, i * keyLen);
    xorInto(block, stripe);
    diffuse(hash, block);
  }
  const last = split.subarray((stripes - 1) * keyLen);
  last.set(key);
  xorInto(last, block);
  return split;
}
