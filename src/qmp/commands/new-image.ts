import { access } from 'node:fs/promises';
import type { BlockNode } from '../../blockdev/node.js';
import { strerror } from '../../image/errno.js';
import { createImage } from '../../image/open.js';
import type { ImageFormat } from '../../image/types.js';
import { QmpError } from '../error.js';
import { namesOf } from './block-info.js';

/** The format of a node's image for a new image made from it (drv->format_name; a file node's image is raw data). */
export function formatName(n: BlockNode): string {
  return n.driver === 'qcow2' ? 'qcow2' : 'raw';
}

/**
 * bdrv_img_create for drive-backup and drive-mirror: a new image of
 * `size` at `path`, naming `base` as its backing file the way QEMU names
 * it (a json: name when its options make it more than its file). Returns
 * the path when this call created the file — only such a file is the
 * caller's to remove again if the command fails.
 */
export async function createTargetImage(path: string, format: 'raw' | 'qcow2', size: number, base?: BlockNode): Promise<string | undefined> {
  const backing = base ? { backingFile: namesOf(base).get(base)!.filename, backingFormat: formatName(base) as ImageFormat } : {};
  const existed = await access(path).then(
    () => true,
    () => false,
  );
  try {
    await createImage(path, format === 'qcow2' ? { format, size, ...backing } : { format, size });
  } catch (err) {
    // bdrv_img_create's words: the file could not be created, with the system's reason.
    const errno = (err as { errno?: string }).errno;
    if (typeof errno === 'string') throw new QmpError('GenericError', `Could not create '${path}': ${strerror(errno)}`);
    throw err;
  }
  return existed ? undefined : path;
}
