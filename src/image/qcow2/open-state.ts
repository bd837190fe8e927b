import { dirname, isAbsolute, resolve } from 'node:path';
import type { ByteFile } from '../byte-file.js';
import { BlockError, invalidImage } from '../errors.js';
import { hasProtocolPrefix } from '../path-protocol.js';
import type { BlockImage, ImageFormat } from '../types.js';
import { repairDirtyImage } from './check.js';
import { Qcow2Corruption } from './corruption.js';
import { AUTOCLEAR_BITMAPS, AUTOCLEAR_DATA_FILE_RAW, dataFileIsRaw, EXT_BITMAPS, hasDataFile, HDR_OFF_AUTOCLEAR, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, parseHeader, type Qcow2Header, V3_HEADER_LENGTH } from './header.js';
import { HostFile } from '../file.js';
import type { Qcow2OpenOptions } from './image.js';
import { Qcow2Layout } from './layout.js';
import { openQcow2Crypto, type Qcow2Crypto } from './crypto/open.js';
import { RefcountManager } from './refcount.js';

/** What opening reads from the file before the image object exists. */
export interface ImageState {
  header: Qcow2Header;
  l1: Uint8Array;
  refcounts: RefcountManager | undefined;
  backing: BlockImage | undefined;
  /** The external data file, when the image has one. */
  dataFile: ByteFile | undefined;
  /** An encrypted image's cipher (and LUKS header). */
  crypto: Qcow2Crypto | undefined;
}

/**
 * Opening a qcow2 image: header and extensions, dirty-bit repair and the
 * checks a read-write open makes, L1 and refcount table, backing chain.
 * On failure everything opened so far is closed, `file` included.
 */
export async function loadImageState(file: ByteFile, opts: Qcow2OpenOptions): Promise<ImageState> {
  const path = file.path;
  const depth = opts.depth ?? 0;
  const readOnly = opts.readOnly ?? false;
  let backing: BlockImage | undefined;
  let dataFile: ByteFile | undefined;
  try {
    const fileSize = await file.size();
    const first = await file.read(0, V3_HEADER_LENGTH);
    const clusterBits = new DataView(first.buffer).getUint32(20);
    const headLen = clusterBits >= 9 && clusterBits <= 21 ? Math.min(2 ** clusterBits, Math.max(fileSize, V3_HEADER_LENGTH)) : V3_HEADER_LENGTH;
    const head = fileSize > V3_HEADER_LENGTH ? await file.read(0, headLen) : first;
    let header = parseHeader(fileSize < 72 ? head.subarray(0, fileSize) : head, path, fileSize);
    const crypto = await openQcow2Crypto(file, header, opts.encryption ?? {}, opts.metadataOnly ?? false);
    dataFile = await resolveDataFile(header, opts, readOnly);
    if (!readOnly && header.incompatibleFeatures & INCOMPAT_DIRTY && !(header.incompatibleFeatures & INCOMPAT_CORRUPT)) {
      // As QEMU does: refcounts may be stale after a crash with lazy
      // refcounts, so a read-write open first repairs them (which can move
      // the refcount table) and clears the bit; then the header is re-read.
      const pass = await repairDirtyImage(file, path);
      // qcow2_check's lines, on stderr as QEMU's driver prints them while it opens the image.
      for (const m of pass.messages) Qcow2Corruption.warn(`${m.reported ? Qcow2Corruption.reportPrefix : ''}${m.text}${m.noNewline ? '' : '\n'}`);
      header = parseHeader(await file.read(0, headLen), path, await file.size());
      if (header.incompatibleFeatures & INCOMPAT_DIRTY) throw invalidImage(path, 'Could not repair dirty image: the dirty bit is still set');
    }
    if (!readOnly) await prepareForWriting(file, header, path, opts.persistentBitmaps ?? false);
    const l1 = await file.read(header.l1TableOffset, header.l1Size * 8);
    const refcounts = readOnly ? undefined : await loadRefcounts(file, header, path, opts.refcountCacheBytes);
    if (opts.backingImage !== undefined) backing = opts.backingImage;
    else if (header.backingFile && (opts.openBacking ?? true)) backing = await openBacking(path, header, opts, depth);
    return { header, l1, refcounts, backing, dataFile, crypto };
  } catch (err) {
    await backing?.close();
    await dataFile?.close();
    await file.close();
    throw err;
  }
}

/**
 * The external data file, as qcow2_do_open finds it: the caller's
 * (blockdev's `data-file`) if given, else the file the header names,
 * opened as given (relative to the working directory, as QEMU 7.2 does).
 * Either is refused where the header says there is none.
 */
async function resolveDataFile(h: Qcow2Header, opts: Qcow2OpenOptions, readOnly: boolean): Promise<ByteFile | undefined> {
  const given = opts.givenDataFile ? await opts.givenDataFile() : undefined;
  try {
    if (hasDataFile(h)) {
      if (given) return given;
      // qemu-img info looks at an image with a data file that is missing, or named nowhere, all the same.
      if (opts.metadataOnly) return new AbsentDataFile(h.dataFile ?? '', readOnly);
      if (h.dataFile !== undefined) return await (opts.openDataFile ?? ((name, ro) => HostFile.open(name, { readOnly: ro })))(h.dataFile, readOnly);
      throw new BlockError('INVALID_ARGUMENT', "'data-file' is required for this image");
    }
    if (given) throw new BlockError('INVALID_ARGUMENT', "'data-file' can only be set for images with an external data file");
    if (dataFileIsRaw(h)) throw new BlockError('INVALID_ARGUMENT', 'data-file-raw requires a data file');
    return undefined;
  } catch (err) {
    await given?.close();
    throw err;
  }
}

/** Any I/O on the data file of an image opened for its metadata only. */
const absent = (): Promise<never> =>
  Promise.reject(new BlockError('IO', 'the external data file was not opened (the image was opened for its metadata only)', { errno: 'EIO' }));

/** The data file of an image opened for its metadata only: there, but any I/O on it fails. */
class AbsentDataFile implements ByteFile {
  constructor(
    readonly path: string,
    readonly readOnly: boolean,
  ) {}
  readonly read = absent;
  readonly readInto = absent;
  readonly write = absent;
  readonly writev = absent;
  readonly size = absent;
  readonly allocatedBytes = absent;
  readonly truncate = absent;
  flush(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The refcount table and a cache of its blocks, for an image open for writing. */
export function loadRefcounts(file: ByteFile, header: Qcow2Header, path: string, cacheBytes = 1 << 20): Promise<RefcountManager> {
  const layout = new Qcow2Layout(header.clusterBits, header.refcountOrder);
  const blocks = Math.max(4, Math.floor(cacheBytes / layout.clusterSize));
  return RefcountManager.load(file, layout, header.refcountTableOffset, header.refcountTableClusters, path, blocks);
}

/** What a read-only image needs before it may be written (a reopen read-write): as an open, but a dirty image is refused. */
export async function prepareForReadWrite(file: ByteFile, header: Qcow2Header, path: string, opts: { persistentBitmaps?: boolean }): Promise<void> {
  if (header.incompatibleFeatures & INCOMPAT_DIRTY) throw invalidImage(path, 'the image is dirty; open it read-write to repair it first');
  await prepareForWriting(file, header, path, opts.persistentBitmaps ?? false);
}

async function prepareForWriting(file: ByteFile, h: Qcow2Header, path: string, keepsBitmaps: boolean): Promise<void> {
  if (h.incompatibleFeatures & INCOMPAT_CORRUPT) {
    throw new BlockError('INVALID_IMAGE', `Could not open '${path}': qcow2: Image is corrupt; cannot be opened read/write`);
  }
  const hasBitmaps = h.extensions.some((e) => e.type === EXT_BITMAPS) && (h.autoclearFeatures & AUTOCLEAR_BITMAPS) !== 0n;
  if (hasBitmaps && !keepsBitmaps) {
    throw new BlockError('UNSUPPORTED', `Could not open '${path}': this tool does not keep persistent dirty bitmaps up to date; open the image read-only, or through the daemon`);
  }
  // Autoclear bits we do not maintain must be cleared before the first write (qcow2.txt); the bitmaps bit stays when the owner keeps them,
  // data-file-raw always (writes keep the data file a raw image: zeroes are written to it too).
  const keep = (hasBitmaps ? AUTOCLEAR_BITMAPS : 0n) | AUTOCLEAR_DATA_FILE_RAW;
  if (h.version === 3 && (h.autoclearFeatures & ~keep) !== 0n) {
    const b = new Uint8Array(8);
    h.autoclearFeatures &= keep;
    new DataView(b.buffer).setBigUint64(0, h.autoclearFeatures);
    await file.write(HDR_OFF_AUTOCLEAR, b);
    await file.flush();
  }
}

/** Opens the backing file `h` names (relative to `path`'s directory), its failure worded as QEMU's "Could not open backing file: …". */
export async function openBacking(path: string, h: Qcow2Header, opts: Pick<Qcow2OpenOptions, 'openBackingImage'>, depth: number): Promise<BlockImage> {
  const name = h.backingFile!;
  // bdrv_get_full_backing_filename_from_filename: a protocol or json: name is taken as it is (the opener may refuse it).
  const full = isAbsolute(name) || hasProtocolPrefix(name) ? name : resolve(dirname(path), name);
  const fmt = h.backingFormat;
  try {
    // bdrv_open_backing_file prefixes whatever the open says, an unknown driver's refusal included.
    // A corrupt header's name may hold control bytes: shown escaped, not written raw to a terminal.
    if (fmt !== undefined && fmt !== 'raw' && fmt !== 'qcow2') throw new BlockError('UNSUPPORTED', `Unknown driver '${printable(fmt)}'`);
    return await opts.openBackingImage(full, fmt as ImageFormat | undefined, depth + 1);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new BlockError(err instanceof BlockError ? err.code : 'IO', `Could not open backing file: ${msg}`, { cause: err });
  }
}

/** `text` with control characters as \xNN escapes (what a message may quote from a corrupt file). */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
