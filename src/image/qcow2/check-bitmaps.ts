import { BlockError, invalidImage } from '../errors.js';
import { type CheckState, isErr } from './check-state.js';
import { incRefcounts, type Pass, type Ret } from './check-walk.js';
import { AUTOCLEAR_BITMAPS, EXT_BITMAPS, type Qcow2Header } from './header.js';
import { type BitmapEntry, FLAG_IN_USE, MAX_BITMAPS, MAX_DIRECTORY_SIZE, MAX_TABLE_SIZE, parseDirectory, parseTable, TABLE_OFFSET_MASK } from './bitmap-directory.js';
import { type CheckMessage, strerror } from './check-types.js';

/** The bitmaps header extension, once validated. */
export interface BitmapsExt {
  nb: number;
  dirOffset: number;
  dirSize: number;
}

/**
 * Reads the bitmaps extension as qcow2_read_extensions() does. Without the
 * autoclear bit the bitmaps are stale: QEMU warns and ignores them (their
 * clusters then show up as leaks). Invalid extensions refuse the open.
 */
export function parseBitmapsExt(h: Qcow2Header, filename: string, clusterSize: number): { ext?: BitmapsExt; warnings: CheckMessage[] } {
  const e = h.extensions.find((x) => x.type === EXT_BITMAPS);
  if (!e) return { warnings: [] };
  if (e.data.length !== 24) throw invalidImage(filename, 'bitmaps_ext: Invalid extension length');
  if ((h.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) {
    const warning =
      h.version < 3
        ? 'This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent'
        : 'a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent';
    return {
      warnings: [
        { text: `warning: ${warning}`, reported: true },
        { text: "Some clusters may be leaked, run 'blockemu img check -r' on the image file to fix.", noNewline: true },
      ],
    };
  }
  const v = new DataView(e.data.buffer, e.data.byteOffset, e.data.byteLength);
  const nb = v.getUint32(0);
  const dirSize = v.getBigUint64(8);
  const dirOffset = v.getBigUint64(16);
  if (v.getUint32(4) !== 0) throw invalidImage(filename, 'bitmaps_ext: Reserved field is not zero');
  if (nb > MAX_BITMAPS) {
    throw invalidImage(filename, `bitmaps_ext: Image has ${nb} bitmaps, exceeding the QEMU supported maximum of ${MAX_BITMAPS}`);
  }
  if (nb === 0) throw invalidImage(filename, 'found bitmaps extension with zero bitmaps');
  if (dirOffset % BigInt(clusterSize) !== 0n) throw invalidImage(filename, 'bitmaps_ext: invalid bitmap directory offset');
  if (dirSize > BigInt(MAX_DIRECTORY_SIZE)) {
    throw invalidImage(filename, `bitmaps_ext: bitmap directory size (${dirSize}) exceeds the maximum supported size (${MAX_DIRECTORY_SIZE})`);
  }
  if (dirOffset > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidImage(filename, 'bitmaps_ext: invalid bitmap directory offset');
  return { ext: { nb, dirOffset: Number(dirOffset), dirSize: Number(dirSize) }, warnings: [] };
}

/** bitmap_list_load(): the directory, or QEMU's message for why it is unusable. */
async function loadDirectory(st: CheckState, ext: BitmapsExt): Promise<BitmapEntry[] | string> {
  if (ext.dirSize === 0) return 'Requested bitmap directory size is zero';
  const dir = await st.read(ext.dirOffset, ext.dirSize);
  if (isErr(dir)) return `Failed to read bitmap directory: ${strerror(dir.errno)}`;
  return parseDirectory(dir, ext.nb, st.clusterSize, st.virtualSize);
}

/** bitmap_table_load(): the table, or the errno why it cannot be used. */
async function loadTable(st: CheckState, b: BitmapEntry): Promise<BigUint64Array | { errno: string }> {
  const raw = await st.read(b.tableOffset, b.tableSize * 8);
  if (isErr(raw)) return raw;
  return parseTable(raw, st.clusterSize);
}

/**
 * What qcow2_load_dirty_bitmaps() verifies when the image is opened: the
 * directory, and the table of every bitmap not marked in use (its size must
 * match the disk size and granularity). Failures refuse the open.
 */
export async function validateBitmapsAtOpen(st: CheckState, ext: BitmapsExt): Promise<void> {
  const list = await loadDirectory(st, ext);
  if (typeof list === 'string') throw invalidImage(st.filename, list);
  for (const b of list) {
    if (b.flags & FLAG_IN_USE) continue;
    const table = await loadTable(st, b);
    if (!(table instanceof BigUint64Array)) {
      throw invalidImage(st.filename, `Could not read bitmap_table table from image for bitmap '${b.name}': ${strerror(table.errno)}`);
    }
    const size = Math.floor(st.virtualSize / 512) * 512;
    const bits = Math.ceil(size / 2 ** b.granularityBits);
    const bytes = Math.ceil(bits / 64) * 8;
    const tabSize = Math.ceil(bytes / st.clusterSize);
    if (tabSize !== b.tableSize || tabSize > MAX_TABLE_SIZE) {
      throw new BlockError('INVALID_IMAGE', `Could not open '${st.filename}': Could not read bitmap '${b.name}' from image: ${strerror('EINVAL')}`);
    }
  }
}

/** qcow2_check_bitmaps_refcounts(): the directory, each bitmap table and its data clusters. */
export async function checkBitmapsRefcounts(p: Pass): Promise<Ret> {
  const { st, res } = p;
  const ext = st.bitmaps;
  if (!ext) return undefined;
  const r = incRefcounts(p, ext.dirOffset, ext.dirSize);
  if (r) return r;
  const list = await loadDirectory(st, ext);
  if (typeof list === 'string') {
    res.corruptions++;
    return 'EINVAL';
  }
  for (const b of list) {
    const r2 = incRefcounts(p, b.tableOffset, b.tableSize * 8);
    if (r2) return r2;
    const table = await loadTable(st, b);
    if (!(table instanceof BigUint64Array)) {
      res.corruptions++;
      return table.errno;
    }
    for (const e of table) {
      const off = Number(e & TABLE_OFFSET_MASK);
      if (off === 0) continue;
      const r3 = incRefcounts(p, off, st.clusterSize);
      if (r3) return r3;
    }
  }
  return undefined;
}
