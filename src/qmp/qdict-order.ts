/**
 * The order in which QEMU iterates a QDict (qobject/qdict.c): by hash bucket
 * (tdb_hash % 512), and within a bucket the most recently inserted key
 * first. Where QEMU reports the first offending member of an object (the
 * QMP envelope checks), iterating in this order picks the same one.
 */
const BUCKETS = 512;

/** Hashes of the keys seen (a small vocabulary: member names), kept so each reply does not hash them again; bounded against arbitrary user keys. */
const HASHES = new Map<string, number>();
const MAX_CACHED = 4096;

function cachedHash(key: string): number {
  let h = HASHES.get(key);
  if (h === undefined) {
    if (HASHES.size >= MAX_CACHED) HASHES.clear();
    h = tdbHash(key);
    HASHES.set(key, h);
  }
  return h;
}

function tdbHash(key: string): number {
  const bytes = new TextEncoder().encode(key);
  let value = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) value = (value + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  return (Math.imul(1103515243, value) + 12345) >>> 0;
}

/**
 * Orders of the key lists seen: a reply repeats a few object shapes many
 * times (one BlockDeviceInfo per node), and sorting each again was most of
 * writing a large reply. A trie over the keys in insertion order finds a
 * shape seen before without building anything (a reply's objects are
 * ordered with no garbage). Bounded like HASHES, by the shapes it holds.
 * Callers get the cached array itself and must not change it.
 */
interface ShapeNode {
  next: Map<string, ShapeNode> | undefined;
  order: readonly string[] | undefined;
}

const newNode = (): ShapeNode => ({ next: undefined, order: undefined });
let shapes = newNode();
let shapeCount = 0;

export function qdictOrder(keys: readonly string[]): readonly string[] {
  if (keys.length < 2) return keys;
  let node = shapes;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    let child = node.next?.get(k);
    if (child === undefined) {
      child = newNode();
      (node.next ??= new Map()).set(k, child);
    }
    node = child;
  }
  if (node.order === undefined) {
    if (shapeCount >= MAX_CACHED) {
      shapes = newNode();
      shapeCount = 0;
    }
    // Insertion index: JSON object keys arrive in document order, as QEMU's parser inserts them.
    node.order = keys
      .map((key, i) => ({ key, i, bucket: cachedHash(key) % BUCKETS }))
      .sort((a, b) => a.bucket - b.bucket || b.i - a.i)
      .map((e) => e.key);
    shapeCount++;
  }
  return node.order;
}
