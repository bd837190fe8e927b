import { constants, deflateRaw, inflateRaw } from 'node:zlib';
import { promisify } from 'node:util';
import { BlockError } from '../errors.js';
import { zstdCompress } from '../zstd/encoder.js';
import { zstdDecompressInto } from '../zstd/decoder.js';

const inflateRawP = promisify(inflateRaw);
const deflateRawP = promisify(deflateRaw);

/** The header's compression type byte: 0 zlib, 1 zstd. */
export const COMPRESSION_ZSTD = 1;

/**
 * qcow2 compressed clusters (block/qcow2-threads.c): zlib's are raw deflate
 * streams (no zlib header) made with a 4 KiB window; zstd's are one or more
 * frames that fill the cluster exactly. Either way decompression stops after
 * one cluster of output, so a hostile stream cannot make us allocate more;
 * what follows it (the last sector's padding) is not read.
 */
export async function decompressCluster(raw: Uint8Array, clusterSize: number, filename: string, at: number, type = 0): Promise<Uint8Array> {
  const where = `'${filename}': compressed cluster at offset 0x${at.toString(16)}`;
  if (type === COMPRESSION_ZSTD) {
    const out = new Uint8Array(clusterSize);
    try {
      zstdDecompressInto(raw, out);
    } catch (err) {
      throw new BlockError('INVALID_IMAGE', `${where} cannot be decompressed: ${(err as Error).message}`, { errno: 'EIO', cause: err });
    }
    return out;
  }
  let out: Buffer;
  try {
    out = await inflateRawP(raw, { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize });
  } catch (err) {
    throw new BlockError('INVALID_IMAGE', `${where} cannot be decompressed: ${(err as Error).message}`, {
      errno: 'EIO',
      cause: err,
    });
  }
  if (out.length !== clusterSize) {
    throw new BlockError('INVALID_IMAGE', `${where} holds ${out.length} bytes instead of ${clusterSize}`, {
      errno: 'EIO',
    });
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** The compressed stream, or undefined when compressing would not save space (QEMU's limit: under a cluster). */
export async function compressCluster(data: Uint8Array, type = 0): Promise<Uint8Array | undefined> {
  if (type === COMPRESSION_ZSTD) {
    const out = zstdCompress(data);
    return out.length < data.length ? out : undefined;
  }
  const out = await deflateRawP(data, { windowBits: 12, memLevel: 9, level: constants.Z_DEFAULT_COMPRESSION });
  return out.length < data.length ? new Uint8Array(out.buffer, out.byteOffset, out.length) : undefined;
}
