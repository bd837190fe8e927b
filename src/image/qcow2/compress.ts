import { constants, deflateRaw, inflateRaw } from 'node:zlib';
import { promisify } from 'node:util';
import { BlockError } from '../errors.js';

const inflateRawP = promisify(inflateRaw);
const deflateRawP = promisify(deflateRaw);

/**
 * qcow2 compressed clusters are raw deflate streams (no zlib header) made with
 * a 4 KiB window (block/qcow2-threads.c). Inflation stops after one cluster of
 * output, so a hostile stream cannot make us allocate more than that.
 */
export async function decompressCluster(raw: Uint8Array, clusterSize: number, filename: string, at: number): Promise<Uint8Array> {
  let out: Buffer;
  try {
    out = await inflateRawP(raw, { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize });
  } catch (err) {
    throw new BlockError('INVALID_IMAGE', `'${filename}': compressed cluster at offset 0x${at.toString(16)} cannot be decompressed: ${(err as Error).message}`, {
      errno: 'EIO',
      cause: err,
    });
  }
  if (out.length !== clusterSize) {
    throw new BlockError('INVALID_IMAGE', `'${filename}': compressed cluster at offset 0x${at.toString(16)} holds ${out.length} bytes instead of ${clusterSize}`, {
      errno: 'EIO',
    });
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** The compressed stream, or undefined when compressing would not save space. */
export async function compressCluster(data: Uint8Array): Promise<Uint8Array | undefined> {
  const out = await deflateRawP(data, { windowBits: 12, memLevel: 9, level: constants.Z_DEFAULT_COMPRESSION });
  return out.length < data.length ? new Uint8Array(out.buffer, out.byteOffset, out.length) : undefined;
}
