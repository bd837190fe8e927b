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
 * writing a large reply. Bounded like HASHES. Callers get the cached array
 * itself and must not change it.
 */
const ORDERS = new Map<string, readonly string[]>();

export function qdictOrder(keys: readonly string[]): readonly string[] {
  if (keys.length < 2) return keys;
  let shape = '';
  for (const k of keys) shape += `${k.length}:${k}`; // lengths keep any two different lists apart, whatever their keys hold
  let order = ORDERS.get(shape);
  if (order === undefined) {
    if (ORDERS.size >= MAX_CACHED) ORDERS.clear();
    // Insertion index: JSON object keys arrive in document order, as QEMU's parser inserts them.
    order = keys
      .map((key, i) => ({ key, i, bucket: cachedHash(key) % BUCKETS }))
      .sort((a, b) => a.bucket - b.bucket || b.i - a.i)
      .map((e) => e.key);
    ORDERS.set(shape, order);
  }
  return order;
}
