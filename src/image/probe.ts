import { HostFile } from './file.js';
import { QCOW2_MAGIC } from './qcow2/header.js';
import type { ImageFormat } from './types.js';

/**
 * Guesses the format as QEMU does: a file starting with the qcow2 magic and a
 * version >= 2 is qcow2, anything else is raw (block.c find_image_format).
 */
export async function probeFormat(path: string): Promise<ImageFormat> {
  const file = await HostFile.open(path, { readOnly: true });
  try {
    return probeBytes(await file.read(0, 8));
  } finally {
    await file.close();
  }
}

export function probeBytes(head: Uint8Array): ImageFormat {
  if (head.length < 8) return 'raw';
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  return view.getUint32(0) === QCOW2_MAGIC && view.getUint32(4) >= 2 ? 'qcow2' : 'raw';
}
