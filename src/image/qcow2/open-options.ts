import type { ByteFile } from '../byte-file.js';
import { BlockError } from '../errors.js';
import type { BlockImage, ImageFormat } from '../types.js';
import type { EncryptionOptions } from './crypto/open.js';

/** How a qcow2 image is opened: what Qcow2Image.open and openFile take. */
export type BackingOpener = (path: string, format: ImageFormat | undefined, depth: number) => Promise<BlockImage>;

export interface Qcow2OpenOptions {
  readOnly?: boolean;
  openBacking?: boolean;
  openBackingImage: BackingOpener;
  /** A backing image chosen by the caller instead of the header's (blockdev's `backing` option); the image takes it over. */
  backingImage?: BlockImage;
  /** Position in a backing chain (0 = the top); deep chains and loops are refused. */
  depth?: number;
  /** Bytes of L2 tables kept in memory (default 4 MiB, at least 4 tables). */
  l2CacheBytes?: number;
  /** Bytes of refcount blocks kept in memory (default 1 MiB, at least 4 blocks). */
  refcountCacheBytes?: number;
  /**
   * The caller keeps the image's persistent dirty bitmaps (loads them with
   * `bitmaps`, records writes in them, stores them before closing), so a
   * read-write open of an image that has some is allowed. Without it such
   * an open is refused: writes would leave the bitmaps silently stale.
   */
  persistentBitmaps?: boolean;
  /**
   * Opens the external data file the caller names (blockdev's `data-file`)
   * instead of the one the header names: called once the header is read,
   * whatever it says, as qcow2_do_open opens the child before its checks.
   * The image takes the file over, which must be opened as `readOnly`
   * says. Refused for an image without a data file.
   */
  givenDataFile?: () => Promise<ByteFile>;
  /** Opens the data file the header names (default: the host file, unlocked). */
  openDataFile?: (name: string, readOnly: boolean) => Promise<ByteFile>;
  /** Only the metadata is wanted (qemu-img info): the data file is not opened, and guest I/O fails. */
  metadataOnly?: boolean;
  /** An encrypted image's encrypt.* options: its format and the password that unlocks it. */
  encryption?: EncryptionOptions;
}

export const MAX_BACKING_DEPTH = 64;

/** Refuses an image `depth` images down a chain when that is too deep (a loop ends here too), before its file is opened. */
export function checkChainDepth(path: string, depth: number): void {
  if (depth > MAX_BACKING_DEPTH) throw new BlockError('INVALID_IMAGE', `Could not open '${path}': backing file chain too deep (more than ${MAX_BACKING_DEPTH} images)`);
}

