import { HostFile } from './file.js';
import { QCOW2_MAGIC } from './qcow2/header.js';
import type { ImageFormat } from './types.js';

/** "LUKS\xba\xbe", as two big-endian words. */
const LUKS_MAGIC_HI = 0x4c554b53;
const LUKS_MAGIC_LO = 0xbabe;

/**
 * Guesses the format as QEMU does: a file starting with the qcow2 magic and a
 * version >= 2 is qcow2, one with the LUKS magic and version 1 is luks
 * (qcrypto_block_luks_has_format), anything else is raw (block.c
 * find_image_format).
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
  if (view.getUint32(0) === LUKS_MAGIC_HI && view.getUint16(4) === LUKS_MAGIC_LO && view.getUint16(6) === 1) return 'luks';
  return view.getUint32(0) === QCOW2_MAGIC && view.getUint32(4) >= 2 ? 'qcow2' : 'raw';
}
