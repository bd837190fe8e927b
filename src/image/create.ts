import type { CreateEncryption } from './crypto/create.js';
import type { ImageFormat, Preallocation } from './types.js';

export interface CreateOptions {
  format: ImageFormat;
  /** Virtual size in bytes. For qcow2 with a backing file, defaults to the backing file's size. */
  size?: number;
  /** qcow2 only */
  clusterSize?: number;
  backingFile?: string;
  /** The backing file's driver as the header records it: any of QEMU's (a bare `file`, as a snapshot of a file node names it). */
  backingFormat?: string;
  /** qcow2: '1.1' (version 3, default) or '0.10' (version 2). */
  compat?: '0.10' | '1.1';
  /** qcow2: 1, 2, 4, 8, 16 (default), 32 or 64. */
  refcountBits?: number;
  lazyRefcounts?: boolean;
  /** qcow2: the backing file is only recorded, not opened (qemu-img create -u, or a caller that has opened it already); size and backing format are then needed. */
  recordBackingOnly?: boolean;
  /** qcow2: guest data goes to this external data file (created empty, then sized; named in the header as given). */
  dataFile?: string;
  /** qcow2: the data file is also kept a valid raw image of the guest data (needs dataFile; metadata preallocated). */
  dataFileRaw?: boolean;
  /** qcow2: extended L2 entries (32 subclusters per cluster; version 3, clusters of 16 KiB or more). */
  extendedL2?: boolean;
  /** qcow2: how compressed clusters are packed (zstd needs version 3); zlib when not given. */
  compressionType?: 'zlib' | 'zstd';
  /** qcow2: encrypt the new image (legacy AES or LUKS), its last creation step; luks: the LUKS header's parameters and key. */
  encryption?: CreateEncryption;
  /** luks: how the file's bytes are reserved (qcow2 and raw are grown to their size with it by the caller). */
  preallocation?: Preallocation;
}
