/**
 * The on-disk shapes of qcow2's bitmaps extension (docs/interop/qcow2.txt,
 * block/qcow2-bitmap.c): the directory of bitmaps, their tables, and the
 * limits QEMU holds them to. Shared by the checker and by the store that
 * loads and saves persistent dirty bitmaps.
 */

export const MAX_BITMAPS = 65535;
export const MAX_DIRECTORY_SIZE = 1024 * MAX_BITMAPS;
export const MAX_TABLE_SIZE = 0x8000000;
export const MAX_PHYS_SIZE = 0x20000000;
export const MIN_GRANULARITY_BITS = 9;
export const MAX_GRANULARITY_BITS = 31;
export const MAX_NAME_SIZE = 1023;
export const FLAG_IN_USE = 1;
/** The bitmap records writes (it is enabled). */
export const FLAG_AUTO = 2;
const RESERVED_FLAGS = 0xfffffffc;
const TYPE_DIRTY_TRACKING = 1;
const DIR_ENTRY = 24;
const TABLE_RESERVED_MASK = 0xff000000000001fen;
export const TABLE_OFFSET_MASK = 0x00fffffffffffe00n;
/** A table entry without a cluster whose bit 0 says "all ones" (else all zeroes). */
export const TABLE_ALL_ONES = 1n;

/** One directory entry. */
export interface BitmapEntry {
  name: string;
  tableOffset: number;
  tableSize: number;
  flags: number;
  granularityBits: number;
}

const encoder = new TextEncoder();

/** calc_dir_entry_size: the entry, its name, padding to 8 bytes. */
export function dirEntrySize(name: string): number {
  return Math.ceil((DIR_ENTRY + encoder.encode(name).length) / 8) * 8;
}

/** Bytes the serialised bitmap takes (whole 64-bit words, as QEMU serialises it). */
export function bitmapDataBytes(virtualSize: number, granularity: number): number {
  return Math.ceil(Math.ceil(virtualSize / granularity) / 64) * 8;
}

/** check_dir_entry(): the constraints a directory entry must meet. */
function entryValid(b: BitmapEntry, nameSize: number, type: number, clusterSize: number, virtualSize: number): boolean {
  if (
    b.tableSize === 0 ||
    b.tableOffset === 0 ||
    b.tableOffset % clusterSize !== 0 ||
    b.tableSize > MAX_TABLE_SIZE ||
    b.granularityBits > MAX_GRANULARITY_BITS ||
    b.granularityBits < MIN_GRANULARITY_BITS ||
    (b.flags & RESERVED_FLAGS) !== 0 ||
    nameSize > MAX_NAME_SIZE ||
    type !== TYPE_DIRTY_TRACKING
  ) {
    return false;
  }
  const phys = b.tableSize * clusterSize;
  if (phys > MAX_PHYS_SIZE) return false;
  const len = Math.floor(virtualSize / 512) * 512;
  return (b.flags & FLAG_IN_USE) !== 0 || len <= phys * 8 * 2 ** b.granularityBits;
}

/** bitmap_list_load()'s parse of the directory: the entries, or QEMU's message for why they are unusable. */
export function parseDirectory(dir: Uint8Array, nb: number, clusterSize: number, virtualSize: number): BitmapEntry[] | string {
  const v = new DataView(dir.buffer, dir.byteOffset, dir.byteLength);
  const list: BitmapEntry[] = [];
  for (let pos = 0; pos < dir.length; ) {
    if (pos + DIR_ENTRY > dir.length) return 'Broken bitmap directory';
    if (list.length + 1 > nb) return 'More bitmaps found than specified in header extension';
    const tableOffset = v.getBigUint64(pos);
    const nameSize = v.getUint16(pos + 18);
    const extra = v.getUint32(pos + 20);
    const size = Math.ceil((DIR_ENTRY + extra + nameSize) / 8) * 8;
    if (pos + size > dir.length) return 'Broken bitmap directory';
    const b: BitmapEntry = {
      name: new TextDecoder().decode(dir.subarray(pos + DIR_ENTRY + extra, pos + DIR_ENTRY + extra + nameSize)),
      tableOffset: tableOffset > BigInt(Number.MAX_SAFE_INTEGER) ? 1 : Number(tableOffset),
      tableSize: v.getUint32(pos + 8),
      flags: v.getUint32(pos + 12),
      granularityBits: dir[pos + 17]!,
    };
    if (extra !== 0) return 'Bitmap extra data is not supported';
    if (!entryValid(b, nameSize, dir[pos + 16]!, clusterSize, virtualSize)) return `Bitmap '${b.name}' doesn't satisfy the constraints`;
    list.push(b);
    pos += size;
  }
  if (list.length !== nb) return 'Less bitmaps found than specified in header extension';
  return list;
}

/** bitmap_list_store()'s directory bytes. */
export function encodeDirectory(list: readonly BitmapEntry[]): Uint8Array {
  const out = new Uint8Array(list.reduce((n, b) => n + dirEntrySize(b.name), 0));
  const v = new DataView(out.buffer);
  let pos = 0;
  for (const b of list) {
    const name = encoder.encode(b.name);
    v.setBigUint64(pos, BigInt(b.tableOffset));
    v.setUint32(pos + 8, b.tableSize);
    v.setUint32(pos + 12, b.flags);
    out[pos + 16] = TYPE_DIRTY_TRACKING;
    out[pos + 17] = b.granularityBits;
    v.setUint16(pos + 18, name.length);
    out.set(name, pos + DIR_ENTRY);
    pos += dirEntrySize(b.name);
  }
  return out;
}

/** The header extension's 24 bytes: count, reserved, directory size and offset. */
export function encodeBitmapsExt(nb: number, dirSize: number, dirOffset: number): Uint8Array {
  const out = new Uint8Array(24);
  const v = new DataView(out.buffer);
  v.setUint32(0, nb);
  v.setBigUint64(8, BigInt(dirSize));
  v.setBigUint64(16, BigInt(dirOffset));
  return out;
}

/** bitmap_table_load()'s checks of a table: the entries, or the errno why it cannot be used. */
export function parseTable(raw: Uint8Array, clusterSize: number): BigUint64Array | { errno: string } {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const table = new BigUint64Array(raw.length / 8);
  for (let i = 0; i < table.length; i++) {
    const e = v.getBigUint64(i * 8);
    const off = e & TABLE_OFFSET_MASK;
    if (e & TABLE_RESERVED_MASK) return { errno: 'EINVAL' };
    if (off !== 0n && ((e & 1n) !== 0n || off % BigInt(clusterSize) !== 0n)) return { errno: 'EINVAL' };
    table[i] = e;
  }
  return table;
}
