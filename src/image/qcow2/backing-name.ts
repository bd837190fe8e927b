import { BlockError } from '../errors.js';
import { MAX_BACKING_FILE_NAME, serializeHeader } from './header.js';
import type { Qcow2Image } from './image.js';

/**
 * qcow2_change_backing_file: the image names another backing file (or
 * none) and format in its header, rewritten in place in cluster 0. Only
 * the name changes: nothing is opened or read through it. Refused as QEMU
 * refuses it, with its errno: a name over 1023 bytes (EINVAL), a header
 * that no longer fits its cluster (ENOSPC).
 */
export async function changeBackingFile(img: Qcow2Image, name: string | undefined, format: string | undefined): Promise<void> {
  if (name !== undefined && Buffer.byteLength(name) > MAX_BACKING_FILE_NAME) throw new BlockError('INVALID_ARGUMENT', 'Invalid argument', { errno: 'EINVAL' });
  const h = img.header;
  const before = { backingFile: h.backingFile, backingFormat: h.backingFormat };
  h.backingFile = name === '' ? undefined : name;
  h.backingFormat = h.backingFile === undefined ? undefined : format;
  const cs = img.layout.clusterSize;
  let bytes: Uint8Array;
  try {
    bytes = serializeHeader(h, cs);
  } catch {
    Object.assign(h, before);
    throw new BlockError('IO', 'No space left on device', { errno: 'ENOSPC' });
  }
  // Everything the header points to is on disk before the header changes (qcow2_update_header flushes first).
  await img.flush();
  const cluster0 = new Uint8Array(cs);
  cluster0.set(bytes);
  await img.file.write(0, cluster0);
  await img.file.flush();
}
