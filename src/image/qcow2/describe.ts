import { hasProtocolPrefix } from '../path-protocol.js';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { ImageInfo } from '../types.js';
import { COMPAT_LAZY_REFCOUNTS, dataFileIsRaw, hasDataFile, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, INCOMPAT_EXTL2, type Qcow2Header } from './header.js';
import type { Qcow2Layout } from './layout.js';

/** What `qemu-img info` shows of a qcow2 image that its header alone tells (bitmaps need the directory: BitmapStore.describe). */
export function describeHeader(h: Qcow2Header, filename: string, layout: Qcow2Layout): ImageInfo {
  const info: ImageInfo = {
    format: 'qcow2',
    filename,
    virtualSize: h.size,
    clusterSize: layout.clusterSize,
    dirtyFlag: (h.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    ...(h.cryptMethod !== 0 ? { encrypted: true } : {}),
    formatSpecific: {
      type: 'qcow2',
      compat: h.version === 3 ? '1.1' : '0.10',
      compressionType: h.compressionType === 1 ? 'zstd' : 'zlib',
      lazyRefcounts: (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
      refcountBits: layout.refcountBits,
      corrupt: (h.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n,
      extendedL2: (h.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n,
      ...(h.dataFile !== undefined ? { dataFile: h.dataFile } : {}),
      ...(hasDataFile(h) ? { dataFileRaw: dataFileIsRaw(h) } : {}),
    },
  };
  if (h.backingFile) {
    info.backingFilename = h.backingFile;
    // bdrv_make_absolute_filename: a protocol name stays as it is.
    info.fullBackingFilename = isAbsolute(h.backingFile) || hasProtocolPrefix(h.backingFile) ? h.backingFile : resolve(dirname(filename), h.backingFile);
    if (h.backingFormat) info.backingFormat = h.backingFormat;
  }
  return info;
}
