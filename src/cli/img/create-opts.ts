import type { CreateOptions } from '../../image/create.js';
import type { CreateEncryption } from '../../image/crypto/create.js';
import { imgSecretBytes } from './objects.js';
import { type CreateOptionDesc, createOptionTable, formattingLine as imageFormattingLine } from '../../image/create-options.js';
import { type ImageFormat, type Preallocation, PREALLOCATIONS } from '../../image/types.js';
import { ImgFailure } from './output.js';
import { parseQemuSize, sizeParamError } from './size-arg.js';
import { splitCommaList } from '../comma-list.js';

/**
 * Image creation options (`-o key=value,…`) with qemu-img 7.2's parsing,
 * validation messages and "Formatting '…', fmt=… …" line. The option tables
 * (image/create-options.ts) list every option of QEMU's raw and qcow2
 * drivers that we implement; options QEMU has but we do not are refused
 * with a message saying so rather than silently ignored.
 */
/** Options QEMU's drivers have that we do not implement. */
const UNSUPPORTED: Record<ImageFormat, string[]> = {
  qcow2: ['encrypt.format', 'encrypt.key-secret', 'encrypt.cipher-alg', 'encrypt.cipher-mode', 'encrypt.ivgen-alg', 'encrypt.ivgen-hash-alg', 'encrypt.hash-alg', 'encrypt.iter-time'],
  raw: [],
  luks: [],
};

/**
 * Splits an option list as QEMU does: commas separate options, ",," is a
 * literal comma, a bare key means key=on. Returns undefined for a list QEMU
 * calls invalid (an empty element).
 */
export function splitOptionList(list: string): Array<[string, string]> | undefined {
  const out: Array<[string, string]> = [];
  for (const item of splitCommaList(list)) {
    if (item === '') return undefined;
    const eq = item.indexOf('=');
    out.push(eq < 0 ? [item, 'on'] : [item.slice(0, eq), item.slice(eq + 1)]);
  }
  return out;
}

const TRUE_WORDS = ['on', 'yes', 'true', 'y'];
const FALSE_WORDS = ['off', 'no', 'false', 'n'];

/** One checked option value: `text` is how qemu-img prints it, `value` what it means. */
export interface OptValue {
  text: string;
  value: bigint | boolean | string;
  /** A number whose text is outside int64 (it wraps as uint64 here, but QAPI's integer visitor refuses the text). */
  notInt64?: boolean;
}

/**
 * Parses the collected -o lists for format `fmt`. `prefix` starts each error
 * ("FILE: " for create; convert reports these errors without it).
 */
export function parseCreateOptions(fmt: ImageFormat, lists: string[], prefix: string): Map<string, OptValue> {
  const table = createOptionTable(fmt);
  const values = new Map<string, OptValue>();
  for (const list of lists) {
    const pairs = splitOptionList(list);
    if (!pairs) throw new ImgFailure(`Invalid option list: ${list}`);
    for (const [key, raw] of pairs) {
      const desc = table.find((d) => d.name === key);
      if (!desc) {
        if (UNSUPPORTED[fmt].includes(key)) throw new ImgFailure(`${prefix}Parameter '${key}' is not supported by blockemu`);
        throw new ImgFailure(`${prefix}Invalid parameter '${key}'`);
      }
      values.set(key, parseValue(desc, raw, prefix));
    }
  }
  return values;
}

function parseValue(desc: CreateOptionDesc, raw: string, prefix: string): OptValue {
  switch (desc.type) {
    case 'size': {
      const r = parseQemuSize(raw);
      if (!r.ok) {
        if (r.reason === 'range') throw new ImgFailure(`${prefix}Value '${raw}' is out of range for parameter '${desc.name}'`);
        throw new ImgFailure(`${prefix}${sizeParamError(desc.name)}`);
      }
      return { text: r.value.toString(), value: r.value };
    }
    case 'number': {
      // strtoull with base 0: 0x… hex, 0… octal, else decimal; a '-' negates modulo 2^64 (so -1 is 2^64-1), and the value prints as a signed 64-bit number.
      const m = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)$/.exec(raw);
      if (!m) throw new ImgFailure(`${prefix}Parameter '${desc.name}' expects a number`);
      const s = m[2]!;
      const abs = /^0[xX]/.test(s) ? BigInt(s) : s.length > 1 && s.startsWith('0') ? BigInt(`0o${s.slice(1)}`) : BigInt(s);
      if (abs >= 1n << 64n) throw new ImgFailure(`${prefix}Value '${raw}' is too large for parameter '${desc.name}'`);
      const v = m[1] === '-' ? BigInt.asUintN(64, -abs) : abs;
      const signed = m[1] === '-' ? -abs : abs;
      return { text: BigInt.asIntN(64, v).toString(), value: v, notInt64: signed !== BigInt.asIntN(64, signed) };
    }
    case 'bool': {
      if (TRUE_WORDS.includes(raw)) return { text: raw, value: true };
      if (FALSE_WORDS.includes(raw)) return { text: raw, value: false };
      throw new ImgFailure(`${prefix}Parameter '${desc.name}' expects 'on' or 'off'`);
    }
    case 'string':
      return { text: raw, value: raw };
  }
}

/** "Formatting 'FILE', fmt=qcow2 cluster_size=65536 …" exactly as qemu-img prints it (without newline). */
export function formattingLine(filename: string, fmt: ImageFormat, values: Map<string, OptValue>): string {
  return imageFormattingLine(filename, fmt, new Map([...values].map(([k, v]) => [k, v.text])));
}

export function str(v: OptValue | undefined): string | undefined {
  return v === undefined ? undefined : String(v.value);
}

export type Fail = (msg: string) => ImgFailure;

/** qcow2 option values → CreateOptions, with the messages qemu's qcow2 driver gives. */
export function qcow2CreateOptions(values: Map<string, OptValue>, fail: Fail): Partial<CreateOptions> {
  const out: Partial<CreateOptions> = {};
  const compat = str(values.get('compat'));
  if (compat !== undefined) {
    if (compat === '0.10' || compat === 'v2') out.compat = '0.10';
    else if (compat === '1.1' || compat === 'v3') out.compat = '1.1';
    else throw fail(`Parameter 'version' does not accept value '${compat}'`);
  }
  if (values.get('refcount_bits')?.notInt64) throw fail("Parameter 'refcount-bits' expects integer");
  // qcow2_co_create's order: the version extended L2 entries need, the cluster size, the cluster size they need.
  const extendedL2 = values.get('extended_l2')?.value === true;
  if (extendedL2 && out.compat === '0.10') throw fail('Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  const cs = values.get('cluster_size')?.value as bigint | undefined;
  if (cs !== undefined) {
    const n = Number(cs);
    if (cs < 512n || cs > 2n * 1024n * 1024n || (n & (n - 1)) !== 0) throw fail('Cluster size must be a power of two between 512 and 2048k');
    out.clusterSize = n;
  }
  if (extendedL2 && (out.clusterSize ?? 65536) < 16384) throw fail('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes');
  if (extendedL2) out.extendedL2 = true;
  const encryption = qcow2EncryptionOptions(values, fail);
  if (encryption) out.encryption = encryption;
  const ct = str(values.get('compression_type'));
  if (ct !== undefined && ct !== 'zlib' && ct !== 'zstd') throw fail(`Parameter 'compression-type' does not accept value '${ct}'`);
  if (ct === 'zstd') out.compressionType = 'zstd';
  const lazy = values.get('lazy_refcounts')?.value === true;
  const rb = values.get('refcount_bits')?.value as bigint | undefined;
  const v2 = out.compat === '0.10';
  if (rb !== undefined) {
    if (rb === 0n || rb > 64n || (rb & (rb - 1n)) !== 0n) throw fail('Refcount width must be a power of two and may not exceed 64 bits');
    if (v2 && rb !== 16n) throw fail('Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)');
    out.refcountBits = Number(rb);
  }
  if (v2 && lazy) throw fail('Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)');
  out.lazyRefcounts = lazy;
  const dataFile = str(values.get('data_file'));
  if (dataFile !== undefined) out.dataFile = dataFile;
  if (values.get('data_file_raw')?.value === true) out.dataFileRaw = true;
  return out;
}


/**
 * qcow2_co_create_opts' encryption options: encryption=on is
 * encrypt.format=aes, encryption=off drops the format; the secret is
 * looked up when the image is encrypted (creation's last step).
 */
export function qcow2EncryptionOptions(values: Map<string, OptValue>, fail: Fail): CreateEncryption | undefined {
  const on = values.get('encryption')?.value;
  let format = str(values.get('encrypt.format'));
  if (on === true) format = 'aes';
  else if (on === false) format = undefined;
  if (format === undefined) return undefined;
  if (format !== 'aes' && format !== 'luks') throw fail(`Parameter 'format' does not accept value '${format}'`);
  return cryptoCreateOptions(values, format, 'encrypt.');
}

/** The luks format's creation options (block_crypto_create_opts_luks): its LUKS parameters, unprefixed. */
export function luksCreateOptions(values: Map<string, OptValue>): CreateEncryption {
  return cryptoCreateOptions(values, 'luks', '');
}

/** QCryptoBlockCreateOptions from options named `prefix`key-secret, `prefix`cipher-alg, …; the secret looked up when the key is made. */
function cryptoCreateOptions(values: Map<string, OptValue>, format: 'aes' | 'luks', prefix: string): CreateEncryption {
  const secret = str(values.get(`${prefix}key-secret`));
  const iterTime = values.get(`${prefix}iter-time`)?.value as bigint | undefined;
  const pick = (k: string) => str(values.get(`${prefix}${k}`));
  return {
    format,
    optPrefix: prefix,
    ...(secret !== undefined ? { key: () => imgSecretBytes(secret) } : {}),
    ...(pick('cipher-alg') !== undefined ? { cipherAlg: pick('cipher-alg')! } : {}),
    ...(pick('cipher-mode') !== undefined ? { cipherMode: pick('cipher-mode')! } : {}),
    ...(pick('ivgen-alg') !== undefined ? { ivgenAlg: pick('ivgen-alg')! } : {}),
    ...(pick('ivgen-hash-alg') !== undefined ? { ivgenHashAlg: pick('ivgen-hash-alg')! } : {}),
    ...(pick('hash-alg') !== undefined ? { hashAlg: pick('hash-alg')! } : {}),
    ...(iterTime !== undefined ? { iterTime: Number(iterTime) } : {}),
  };
}

/**
 * The format's creation options and the preallocation mode, checked as
 * qemu-img's create and convert both have the drivers check them (an
 * unknown mode is the raw and luks drivers' "invalid parameter value",
 * qcow2's QAPI visitor's words; raw takes no metadata preallocation).
 */
export function formatCreateOptions(fmt: ImageFormat, values: Map<string, OptValue>, fail: Fail): { opts: CreateOptions; preallocation: Preallocation } {
  const opts: CreateOptions = { format: fmt };
  if (fmt === 'qcow2') Object.assign(opts, qcow2CreateOptions(values, fail));
  if (fmt === 'luks') opts.encryption = luksCreateOptions(values);
  const prealloc = str(values.get('preallocation'));
  if (prealloc !== undefined && !(PREALLOCATIONS as readonly string[]).includes(prealloc)) {
    throw fail(fmt !== 'qcow2' ? `invalid parameter value: ${prealloc}` : `Parameter 'preallocation' does not accept value '${prealloc}'`);
  }
  const preallocation = (prealloc ?? 'off') as Preallocation;
  if (fmt === 'raw' && preallocation === 'metadata') throw fail('Unsupported preallocation mode: metadata');
  return { opts, preallocation };
}
