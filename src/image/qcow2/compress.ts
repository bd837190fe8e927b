import { promisify } from 'node:util';
import { BlockError } from '../errors.js';
import { nodeZlib } from '../lazy-builtins.js';

// zlib and the zstd codec load with the first compressed cluster (most images have none), once.
type ZlibCall = (data: Uint8Array, opts: import('node:zlib').ZlibOptions) => Promise<Buffer>;
let zlib: { inflateRaw: ZlibCall; deflateRaw: ZlibCall; constants: typeof import('node:zlib').constants } | undefined;
const zlibAsync = () => {
  if (!zlib) {
    const z = nodeZlib();
    zlib = { inflateRaw: promisify(z.inflateRaw), deflateRaw: promisify(z.deflateRaw), constants: z.constants };
  }
  return zlib;
};
let zstdDecoder: Promise<typeof import('../zstd/decoder.js')> | undefined;
let zstdEncoder: Promise<typeof import('../zstd/encoder.js')> | undefined;

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
    const { zstdDecompressInto } = await (zstdDecoder ??= import('../zstd/decoder.js'));
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
    const z = zlibAsync();
    out = await z.inflateRaw(raw, { finishFlush: z.constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize });
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
    const { zstdCompress } = await (zstdEncoder ??= import('../zstd/encoder.js'));
    const out = zstdCompress(data);
    return out.length < data.length ? out : undefined;
  }
  const z = zlibAsync();
  const out = await z.deflateRaw(data, { windowBits: 12, memLevel: 9, level: z.constants.Z_DEFAULT_COMPRESSION });
  return out.length < data.length ? new Uint8Array(out.buffer, out.byteOffset, out.length) : undefined;
}
