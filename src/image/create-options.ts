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
  /** What `-o help` says of it (the driver's QemuOptDesc help). */
  readonly help: string;
  /** Printed in the Formatting line even when not given (qemu's def_value_str). */
  readonly def?: string;
  /** The file protocol's, not the format's: `-o help` lists it only when given a file name. */
  readonly protocol?: boolean;
}

const SIZE: CreateOptionDesc = { name: 'size', type: 'size', help: 'Virtual disk size' };
const FILE_PREALLOCATION: CreateOptionDesc = { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, falloc, full)', protocol: true };

/**
 * The file protocol's own options, which qemu-img merges after the format's:
 * btrfs's nocow and XFS's extent size hint, taken and (on other file
 * systems, as in QEMU) without effect.
 */
const FILE_OPTIONS: readonly CreateOptionDesc[] = [
  { name: 'nocow', type: 'bool', help: 'Turn off copy-on-write (valid only on btrfs)', protocol: true },
  { name: 'extent_size_hint', type: 'size', help: 'Extent size hint for the image file, 0 to disable', protocol: true },
];

/** The LUKS parameters, as the luks format names them and qcow2 with its `encrypt.` prefix. */
const luksOptions = (prefix: string, secretHelp: string): CreateOptionDesc[] => [
  { name: `${prefix}key-secret`, type: 'string', help: secretHelp },
  { name: `${prefix}cipher-alg`, type: 'string', help: 'Name of encryption cipher algorithm' },
  { name: `${prefix}cipher-mode`, type: 'string', help: 'Name of encryption cipher mode' },
  { name: `${prefix}ivgen-alg`, type: 'string', help: 'Name of IV generator algorithm' },
  { name: `${prefix}ivgen-hash-alg`, type: 'string', help: 'Name of IV generator hash algorithm' },
  { name: `${prefix}hash-alg`, type: 'string', help: 'Name of encryption hash algorithm' },
  { name: `${prefix}iter-time`, type: 'number', help: 'Time to spend in PBKDF in milliseconds' },
];

/** Print order observed from qemu-img 7.2 (it is QEMU's merged create-option list order). */
const QCOW2_OPTIONS: readonly CreateOptionDesc[] = [
  // The old qcow encryption switch (encrypt.format=aes), then the encrypt.* options.
  { name: 'encryption', type: 'bool', help: "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)" },
  { name: 'encrypt.format', type: 'string', help: "Encrypt the image, format choices: 'aes', 'luks'" },
  ...luksOptions('encrypt.', 'ID of secret providing qcow AES key or LUKS passphrase'),
  { name: 'cluster_size', type: 'size', def: '65536', help: 'qcow2 cluster size' },
  { name: 'extended_l2', type: 'bool', def: 'off', help: 'Extended L2 tables' },
  { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, metadata, falloc, full)' },
  { name: 'compression_type', type: 'string', def: 'zlib', help: 'Compression method used for image cluster compression' },
  SIZE,
  { name: 'compat', type: 'string', help: 'Compatibility level (v2 [0.10] or v3 [1.1])' },
  { name: 'backing_file', type: 'string', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', help: 'Image format of the base image' },
  { name: 'data_file', type: 'string', help: 'File name of an external data file' },
  { name: 'data_file_raw', type: 'bool', help: 'The external data file must stay valid as a raw image' },
  { name: 'lazy_refcounts', type: 'bool', def: 'off', help: 'Postpone refcount updates' },
  { name: 'refcount_bits', type: 'number', def: '16', help: 'Width of a reference count entry in bits' },
  ...FILE_OPTIONS,
];
const RAW_OPTIONS: readonly CreateOptionDesc[] = [SIZE, FILE_PREALLOCATION, ...FILE_OPTIONS];
/** block_crypto_create_opts_luks, then the file's (its preallocation after nocow, as qemu-img merges them). */
const LUKS_OPTIONS: readonly CreateOptionDesc[] = [
  SIZE,
  ...luksOptions('', 'ID of the secret that provides the keyslot passphrase'),
  FILE_OPTIONS[0]!,
  FILE_PREALLOCATION,
  FILE_OPTIONS[1]!,
];

/** The amend options of qcow2 (qcow2_amend_opts) and luks (block_crypto_amend_opts_luks). */
const keySlotAmendOptions = (prefix: string): CreateOptionDesc[] => [
  { name: `${prefix}state`, type: 'string', help: 'Select new state of affected keyslots (active/inactive)' },
  { name: `${prefix}keyslot`, type: 'number', help: 'Select a single keyslot to modify explicitly' },
  { name: `${prefix}old-secret`, type: 'string', help: 'Select all keyslots that match this password' },
  { name: `${prefix}new-secret`, type: 'string', help: 'New secret to set in the matching keyslots. Empty string to erase' },
  { name: `${prefix}iter-time`, type: 'number', help: 'Time to spend in PBKDF in milliseconds' },
];
const AMEND_OPTIONS: Readonly<Record<ImageFormat, readonly CreateOptionDesc[] | undefined>> = {
  qcow2: [
    ...QCOW2_OPTIONS.filter((d) => ['size', 'compat', 'backing_file', 'backing_fmt', 'data_file', 'data_file_raw', 'lazy_refcounts', 'refcount_bits'].includes(d.name)),
    ...keySlotAmendOptions('encrypt.'),
  ],
  luks: keySlotAmendOptions(''),
  raw: undefined,
};

export function amendOptionTable(fmt: ImageFormat): readonly CreateOptionDesc[] | undefined {
  return AMEND_OPTIONS[fmt];
}

const TYPE_NAMES: Readonly<Record<CreateOptionType, string>> = { size: 'size', number: 'num', bool: 'bool (on/off)', string: 'str' };

/** qemu_opts_print_help: "  name=<type>", padded to 24 columns, " - help"; the lines sorted as strcmp sorts them. */
export function optionHelpLines(descs: readonly CreateOptionDesc[]): string[] {
  return descs
    .map((d) => `  ${d.name}=<${TYPE_NAMES[d.type]}>`.padEnd(24) + ` - ${d.help}`)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The create options `-o help` lists: the format's, and with `protocol`
 * (a target file name was given) the protocol's merged in as
 * qemu_opts_append merges them (a name the format has stays the format's).
 */
export function createOptionHelp(fmt: ImageFormat, protocol: 'file' | 'simple' | undefined): readonly CreateOptionDesc[] {
  const own = createOptionTable(fmt).filter((d) => !d.protocol);
  if (protocol === undefined) return own;
  // bdrv_create_opts_simple: what protocols without options of their own (nbd) take.
  const extra = protocol === 'file' ? [SIZE, FILE_PREALLOCATION, ...FILE_OPTIONS] : [SIZE, { ...FILE_PREALLOCATION, help: 'Preallocation mode (allowed values: off)' }];
  return [...own, ...extra.filter((d) => !own.some((o) => o.name === d.name))];
}

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
