/**
 * Image formats named by commands that create or open an image file
 * themselves (drive-backup's target, blockdev-snapshot-sync's overlay).
 * QEMU looks a format up by name (bdrv_find_format) and words a name no
 * driver has by the path: creating (bdrv_img_create) says "Unknown file
 * format", opening (bdrv_fill_options) says "Unknown driver". A format
 * QEMU has and blockemu lacks is blockemu's refusal, not an unknown name.
 */
import { access } from 'node:fs/promises';
import { strerror } from '../../blockdev/qemu-io/errno.js';
import { createImage } from '../../image/open.js';
import type { ImageFormat } from '../../image/types.js';
import { QmpError } from '../error.js';
import { BlockdevDriver } from '../schema/block-core/common.js';

const fail = (desc: string) => new QmpError('GenericError', desc);

/** Whether QEMU 7.2 has a driver of this name (the BlockdevDriver enum lists them all). */
export function isQemuDriver(name: string): boolean {
  return (BlockdevDriver.values as readonly string[]).includes(name);
}

/** bdrv_fill_options: a driver name no driver has. Known names go on to the node opener. */
export function checkOpenFormat(format: string): void {
  if (!isQemuDriver(format)) throw fail(`Unknown driver '${format}'`);
}

/** Formats blockemu creates, and whether their images can name a backing file (a protocol's or raw's cannot). */
const CREATABLE: Record<string, { backing: boolean }> = { qcow2: { backing: true }, raw: { backing: false }, file: { backing: false } };

export interface NewImage {
  path: string;
  format: string;
  size: number;
  backingFile?: string;
  backingFormat?: ImageFormat;
}

/**
 * Creates an image file as bdrv_img_create does, with its checks and
 * words in its order: the format, then whether it takes a backing file.
 * `file` writes the bare host file, as raw does. Resolves to whether the
 * file is new (a caller that fails later removes only what it created).
 */
export async function createImageFile(img: NewImage): Promise<boolean> {
  if (!isQemuDriver(img.format)) throw fail(`Unknown file format '${img.format}'`);
  const kind = CREATABLE[img.format];
  if (!kind) throw fail(`Creating '${img.format}' images is not supported by blockemu (supported: ${Object.keys(CREATABLE).join(', ')})`);
  if (img.backingFile !== undefined && !kind.backing) throw fail(`Backing file not supported for file format '${img.format}'`);
  const existed = await access(img.path).then(
    () => true,
    () => false,
  );
  try {
    if (img.format === 'qcow2') await createImage(img.path, { format: 'qcow2', size: img.size, backingFile: img.backingFile, backingFormat: img.backingFormat });
    else await createImage(img.path, { format: 'raw', size: img.size });
  } catch (err) {
    // bdrv_img_create's words: the file could not be created, with the system's reason.
    const errno = (err as { errno?: string }).errno;
    if (typeof errno === 'string') throw fail(`Could not create '${img.path}': ${strerror(errno)}`);
    throw err;
  }
  return !existed;
}
