/**
 * `blockemu io --image-opts`: the operand is a QemuOpts string (qemu-io
 * parses it with qemu_opts_parse_noisily on an option list that accepts
 * any key, then hands the flat dictionary to blk_new_open). We read the keys
 * blockemu's open understands and refuse the rest in QEMU's words.
 */

/** One parsed option string: the keys in order (a repeated key keeps its last value), and the warnings to print. */
export interface ImageOptsParse {
  opts: Map<string, string>;
  warnings: string[];
}

/**
 * QemuOpts syntax: "key=value" pairs split at ',', where ",," stands for a
 * comma; a bare "key" means key=on and "nokey" key=off, both deprecated
 * (QEMU warns: qemu-io's parse is the "noisy" one).
 */
export function parseImageOpts(text: string): ImageOptsParse {
  const opts = new Map<string, string>();
  const warnings: string[] = [];
  let i = 0;
  const readUntil = (stops: string): string => {
    let out = '';
    while (i < text.length) {
      const c = text[i]!;
      if (c === ',' && text[i + 1] === ',' && stops === ',') {
        out += ',';
        i += 2;
        continue;
      }
      if (stops.includes(c)) break;
      out += c;
      i++;
    }
    return out;
  };
  while (i < text.length) {
    const key = readUntil('=,');
    if (text[i] === '=') {
      i++;
      opts.set(key, readUntil(','));
    } else {
      const off = key.startsWith('no');
      const name = off ? key.slice(2) : key;
      warnings.push(`warning: short-form boolean option '${name}' deprecated\nPlease use ${name}=${off ? 'off' : 'on'} instead`);
      opts.set(name, off ? 'off' : 'on');
    }
    if (text[i] === ',') i++;
  }
  return { opts, warnings };
}

/** What blockemu takes from the options; the rest of qemu-io's open (cache, aio, locks) is decided with the command-line flags. */
export interface ImageOptsPlan {
  filename: string;
  format?: string;
  readOnly?: boolean;
  forceShare?: boolean;
  direct?: boolean;
  noFlush?: boolean;
  unmap?: boolean;
  nativeAio?: boolean;
}

const FORMAT_KEYS = new Set(['driver', 'node-name', 'read-only', 'force-share', 'cache.direct', 'cache.no-flush', 'discard', 'auto-read-only', 'detect-zeroes']);
const FILE_KEYS = new Set(['driver', 'filename', 'aio', 'locking', 'node-name', 'read-only', 'force-share', 'cache.direct', 'cache.no-flush', 'discard']);

function onOff(key: string, v: string): boolean {
  if (v === 'on' || v === 'yes' || v === 'true' || v === 'y') return true;
  if (v === 'off' || v === 'no' || v === 'false' || v === 'n') return false;
  throw new Error(`Parameter '${key}' expects 'on' or 'off'`);
}

/**
 * The flat options as the block layer checks them: the format node's own
 * keys, "file.*" for its protocol child, anything else refused the way
 * bdrv_open_inherit words it. Throws with the inner message.
 */
export function planImageOpts(opts: ReadonlyMap<string, string>): ImageOptsPlan {
  const driver = opts.get('driver');
  if (driver !== undefined && driver !== 'raw' && driver !== 'qcow2' && driver !== 'file') throw new Error(`Unknown driver '${driver}'`);
  const fileDriver = opts.get('file.driver');
  if (fileDriver !== undefined && fileDriver !== 'file') throw new Error(`Unknown driver '${fileDriver}'`);
  // driver=file is the protocol node itself: its keys sit at the top level.
  const protocolOnly = driver === 'file';
  const filename = protocolOnly ? opts.get('filename') : opts.get('file.filename');
  if (opts.has('file') && !opts.has('file.filename')) {
    const ref = opts.get('file')!;
    throw new Error(`Cannot find device='${ref}' nor node-name='${ref}'`);
  }
  for (const key of opts.keys()) {
    if (key.startsWith('file.') && !protocolOnly) {
      if (!FILE_KEYS.has(key.slice(5))) throw new Error(`Block protocol 'file' doesn't support the option '${key.slice(5)}'`);
    } else if (!(protocolOnly ? FILE_KEYS : FORMAT_KEYS).has(key)) {
      if (protocolOnly) throw new Error(`Block protocol 'file' doesn't support the option '${key}'`);
      if (driver === undefined) throw new Error('Must specify either driver or file');
      throw new Error(`Block format '${driver}' does not support the option '${key}'`);
    }
  }
  if (filename === undefined) {
    if (driver === undefined || protocolOnly) throw new Error("The 'file' block driver requires a file name");
    throw new Error('A block device must be specified for "file"');
  }
  const get = (k: string): boolean | undefined => {
    const v = opts.get(k) ?? (protocolOnly ? undefined : opts.get(`file.${k}`));
    return v === undefined ? undefined : onOff(k, v);
  };
  const discard = opts.get('discard');
  const aio = opts.get(protocolOnly ? 'aio' : 'file.aio');
  if (aio !== undefined && aio !== 'threads' && aio !== 'native' && aio !== 'io_uring') throw new Error(`Parameter 'aio' does not accept value '${aio}'`);
  return {
    filename,
    format: protocolOnly ? 'raw' : driver,
    readOnly: get('read-only'),
    forceShare: get('force-share'),
    direct: get('cache.direct'),
    noFlush: get('cache.no-flush'),
    unmap: discard === undefined ? undefined : discard === 'unmap' || discard === 'on',
    nativeAio: aio === undefined ? undefined : aio === 'native',
  };
}
