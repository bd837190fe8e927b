import type { ImageFormat } from './types.js';

/**
 * The image creation options of QEMU's raw and qcow2 drivers that blockemu
 * implements, in the order QEMU prints them in its "Formatting 'FILE',
 * fmt=… …" line: qemu-img create prints it, and so does a daemon that
 * creates an image for a command (bdrv_img_create, not quiet, for
 * blockdev-snapshot-sync's overlay, drive-backup's and drive-mirror's target).
 */
export type CreateOptionType = 'size' | 'number' | 'bool' | 'string';

export interface CreateOptionDesc {
  readonly name: string;
  readonly type: CreateOptionType;
  /** Printed in the Formatting line even when not given (qemu's def_value_str). */
  readonly def?: string;
}

/**
 * The file protocol's own options, which qemu-img merges after the format's:
 * btrfs's nocow and XFS's extent size hint, taken and (on other file
 * systems, as in QEMU) without effect.
 */
const FILE_OPTIONS: readonly CreateOptionDesc[] = [
  { name: 'nocow', type: 'bool' },
  { name: 'extent_size_hint', type: 'size' },
];

/** Print order observed from qemu-img 7.2 (it is QEMU's merged create-option list order). */
const QCOW2_OPTIONS: readonly CreateOptionDesc[] = [
  // The old qcow encryption switch (encrypt.format=aes), then the encrypt.* options.
  { name: 'encryption', type: 'bool' },
  { name: 'encrypt.format', type: 'string' },
  { name: 'encrypt.key-secret', type: 'string' },
  { name: 'encrypt.cipher-alg', type: 'string' },
  { name: 'encrypt.cipher-mode', type: 'string' },
  { name: 'encrypt.ivgen-alg', type: 'string' },
  { name: 'encrypt.ivgen-hash-alg', type: 'string' },
  { name: 'encrypt.hash-alg', type: 'string' },
  { name: 'encrypt.iter-time', type: 'number' },
  { name: 'cluster_size', type: 'size', def: '65536' },
  { name: 'extended_l2', type: 'bool', def: 'off' },
  { name: 'preallocation', type: 'string' },
  { name: 'compression_type', type: 'string', def: 'zlib' },
  { name: 'size', type: 'size' },
  { name: 'compat', type: 'string' },
  { name: 'backing_file', type: 'string' },
  { name: 'backing_fmt', type: 'string' },
  { name: 'data_file', type: 'string' },
  { name: 'data_file_raw', type: 'bool' },
  { name: 'lazy_refcounts', type: 'bool', def: 'off' },
  { name: 'refcount_bits', type: 'number', def: '16' },
  ...FILE_OPTIONS,
];
const RAW_OPTIONS: readonly CreateOptionDesc[] = [{ name: 'size', type: 'size' }, { name: 'preallocation', type: 'string' }, ...FILE_OPTIONS];
/** block_crypto_create_opts_luks, then the file's (its preallocation after nocow, as qemu-img merges them). */
const LUKS_OPTIONS: readonly CreateOptionDesc[] = [
  { name: 'size', type: 'size' },
  { name: 'key-secret', type: 'string' },
  { name: 'cipher-alg', type: 'string' },
  { name: 'cipher-mode', type: 'string' },
  { name: 'ivgen-alg', type: 'string' },
  { name: 'ivgen-hash-alg', type: 'string' },
  { name: 'hash-alg', type: 'string' },
  { name: 'iter-time', type: 'number' },
  FILE_OPTIONS[0]!,
  { name: 'preallocation', type: 'string' },
  FILE_OPTIONS[1]!,
];

export function createOptionTable(fmt: ImageFormat): readonly CreateOptionDesc[] {
  return fmt === 'qcow2' ? QCOW2_OPTIONS : fmt === 'luks' ? LUKS_OPTIONS : RAW_OPTIONS;
}

/**
 * "Formatting 'FILE', fmt=qcow2 cluster_size=65536 …" as QEMU prints it
 * (without newline); `texts` are the given options as written. The file
 * protocol (`fmt=file`) prints what raw prints: raw's options are its own.
 */
export function formattingLine(filename: string, fmt: ImageFormat | 'file', texts: ReadonlyMap<string, string>): string {
  const parts = [`Formatting '${filename}', fmt=${fmt}`];
  for (const d of createOptionTable(fmt === 'file' ? 'raw' : fmt)) {
    const v = texts.get(d.name) ?? d.def;
    // qemu_opts_print doubles a string value's commas, as an option string would need them.
    if (v !== undefined) parts.push(`${d.name}=${d.type === 'string' ? v.replaceAll(',', ',,') : v}`);
  }
  return parts.join(' ');
}
