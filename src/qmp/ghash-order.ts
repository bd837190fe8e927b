/**
 * Which unexpected member QEMU names when an object has several: the
 * input visitor copies the object's keys into a GLib hash table (in QDict
 * order), removes each member as it is visited, and reports the first key
 * left when iterating the table. This replays GLib 2.74's open-addressing
 * table (g_str_hash, index = hash * 11 % prime, quadratic probing, in-place
 * rehash on resize) far enough to know that iteration order.
 */
import { qdictOrder } from './qdict-order.js';

const MIN_SHIFT = 3;
// GLib's prime_mod table: the modulus for a table of 1 << shift slots.
const PRIME_MOD = [1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521];
const UNUSED = 0;
const TOMBSTONE = 1;

function strHash(key: string): number {
  let h = 5381;
  // g_str_hash reads the UTF-8 bytes as signed char.
  for (const b of new TextEncoder().encode(key)) h = (Math.imul(h, 33) + (b >= 128 ? b - 256 : b)) >>> 0;
  return h < 2 ? 2 : h;
}

class GHashTable {
  private shift = MIN_SHIFT;
  private hashes: number[] = new Array<number>(1 << MIN_SHIFT).fill(UNUSED);
  private keys: Array<string | undefined> = new Array<string | undefined>(1 << MIN_SHIFT).fill(undefined);
  private nnodes = 0;
  private noccupied = 0;

  private get size(): number {
    return 1 << this.shift;
  }
  private index(hash: number): number {
    return (Math.imul(hash, 11) >>> 0) % PRIME_MOD[this.shift]!;
  }
  /** The slot holding `key`, or the slot it would go to (first tombstone, else the unused slot ending the probe). */
  private lookup(key: string, hash: number): number {
    let i = this.index(hash);
    let tombstone = -1;
    for (let step = 1; this.hashes[i] !== UNUSED; step++) {
      if (this.hashes[i] === hash && this.keys[i] === key) return i;
      if (this.hashes[i] === TOMBSTONE && tombstone < 0) tombstone = i;
      i = (i + step) & (this.size - 1);
    }
    return tombstone >= 0 ? tombstone : i;
  }
  insert(key: string): void {
    const hash = strHash(key);
    const i = this.lookup(key, hash);
    if (this.hashes[i]! >= 2) return;
    const wasUnused = this.hashes[i] === UNUSED;
    this.hashes[i] = hash;
    this.keys[i] = key;
    this.nnodes++;
    if (wasUnused) {
      this.noccupied++;
      this.maybeResize();
    }
  }
  remove(key: string): void {
    const i = this.lookup(key, strHash(key));
    if (this.hashes[i]! < 2) return;
    this.hashes[i] = TOMBSTONE;
    this.keys[i] = undefined;
    this.nnodes--;
    this.maybeResize();
  }
  /** The keys in iteration order (g_hash_table_iter). */
  inOrder(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.size; i++) if (this.hashes[i]! >= 2) out.push(this.keys[i]!);
    return out;
  }
  first(): string | undefined {
    for (let i = 0; i < this.size; i++) if (this.hashes[i]! >= 2) return this.keys[i];
    return undefined;
  }
  private maybeResize(): void {
    const size = this.size;
    if ((size > this.nnodes * 4 && size > 1 << MIN_SHIFT) || size <= this.noccupied + Math.floor(this.noccupied / 16)) this.resize();
  }
  private resize(): void {
    const oldSize = this.size;
    let n = Math.trunc(this.nnodes * 1.333);
    let shift = 0;
    for (; n; shift++) n >>= 1;
    this.shift = Math.min(Math.max(shift, MIN_SHIFT), PRIME_MOD.length - 1);
    const size = this.size;
    for (let i = oldSize; i < size; i++) {
      this.hashes[i] = UNUSED;
      this.keys[i] = undefined;
    }
    // Rehash in place: entries are evicted along their new probe chains, as GLib's resize_map does.
    const placed = new Array<boolean>(Math.max(size, oldSize)).fill(false);
    for (let i = 0; i < oldSize; i++) {
      let hash = this.hashes[i]!;
      if (hash < 2) {
        this.hashes[i] = UNUSED;
        continue;
      }
      if (placed[i]) continue;
      this.hashes[i] = UNUSED;
      let key = this.keys[i];
      this.keys[i] = undefined;
      for (;;) {
        let j = this.index(hash);
        for (let step = 1; placed[j]; step++) j = (j + step) & (size - 1);
        placed[j] = true;
        const replaced = this.hashes[j]!;
        const replacedKey = this.keys[j];
        this.hashes[j] = hash;
        this.keys[j] = key;
        if (replaced < 2) break;
        hash = replaced;
        key = replacedKey;
      }
    }
    this.hashes.length = size;
    this.keys.length = size;
    this.noccupied = this.nnodes;
  }
}

/**
 * The member QEMU reports as unexpected: `keys` as they arrived (document
 * order), `consumed` the members the visit took, in visiting order.
 */
export function firstLeftover(keys: readonly string[], consumed: readonly string[]): string | undefined {
  const table = new GHashTable();
  for (const k of qdictOrder(keys)) table.insert(k);
  for (const k of consumed) table.remove(k);
  return table.first();
}

/** The order GLib iterates a string-keyed hash table after inserting `keys` in that order. */
export function ghashOrder(keys: readonly string[]): string[] {
  const table = new GHashTable();
  for (const k of keys) table.insert(k);
  return table.inOrder();
}
