import { BlockError } from '../image/errors.js';
import { parseStrtosz } from './qemu-io/numbers.js';

/**
 * A node's options as QEMU keeps them (bs->options, bs->explicit_options):
 * a flat dictionary ("file.filename", "inject-error.0.event") of typed
 * values, as blockdev-add gave them. A reopen compares new options with
 * these, so the helpers here follow QEMU's QDict and QemuOpts rules —
 * including the one that makes a number or a boolean that went through
 * QemuOpts a string, which no longer equals the typed value it came from.
 */

/** One flat option dictionary; insertion order is kept (QEMU's order within a hash bucket). */
export type Options = Record<string, unknown>;

/** The order QEMU iterates a QDict in (where the first offending key names an error); it comes from the layer that knows it. */
export type KeyOrder = (keys: readonly string[]) => readonly string[];

/** The keys as given: for callers that drop the error, so which option it would name does not matter. */
export const insertionOrder: KeyOrder = (keys) => [...keys];

/**
 * qdict_flatten: nested objects and lists become dotted keys
 * ("inject-error.0.event"); empty ones stay as they are, as QEMU leaves
 * them (then no option of that name exists and a reopen refuses it).
 */
export function flattenQdict(o: Record<string, unknown>, prefix = '', out: Options = {}): Options {
  for (const [k, v] of Object.entries(o)) {
    const key = prefix + k;
    if (Array.isArray(v) && v.length > 0) {
      v.forEach((item, i) => (isObject(item) && Object.keys(item).length > 0 ? flattenQdict(item, `${key}.${i}.`, out) : (out[`${key}.${i}`] = item)));
    } else if (isObject(v) && Object.keys(v).length > 0) {
      flattenQdict(v, `${key}.`, out);
    } else {
      out[key] = v;
    }
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** qdict_extract_subqdict: takes the keys under `prefix` out of `options`, returning them without the prefix. */
export function extractSub(options: Options, prefix: string): Options {
  const out: Options = {};
  for (const key of Object.keys(options)) {
    if (!key.startsWith(prefix)) continue;
    out[key.slice(prefix.length)] = options[key];
    delete options[key];
  }
  return out;
}

/** qdict_join(dest, src, false): the keys of `src` that `dest` does not have are added. */
export function joinOptions(dest: Options, src: Options): void {
  for (const [k, v] of Object.entries(src)) if (!(k in dest)) dest[k] = v;
}

/** qdict_copy_default: `key` from `src` when `dest` has none. */
export function copyDefault(dest: Options, src: Options, key: string): void {
  if (!(key in dest) && key in src) dest[key] = src[key];
}

/** qdict_set_default_str. */
export function setDefault(dest: Options, key: string, value: string): void {
  if (!(key in dest)) dest[key] = value;
}

/**
 * What QemuOpts keep of a value (qemu_opts_from_qdict_entry): its text.
 * Booleans become "on"/"off", numbers their decimal digits.
 */
export function optText(v: unknown): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return String(v);
}

/**
 * qemu_opts_absorb_qdict followed, for what is left, by
 * qemu_opts_to_qdict: the options named are taken out of `options` and
 * returned as QemuOpts hold them (text). Other keys stay.
 */
export function absorb(options: Options, names: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of names) {
    if (!(name in options)) continue;
    out.set(name, optText(options[name]));
    delete options[name];
  }
  return out;
}

/** qemu_opts_to_qdict: what a driver did not consume goes back into the dictionary, as text. */
export function putBack(options: Options, opts: ReadonlyMap<string, string>): void {
  for (const [k, v] of opts) options[k] = v;
}

/** qemu_opt_get_bool (qapi_bool_parse) on an option's text; `def` when it is not set. */
export function optBool(text: string | undefined, def: boolean): boolean {
  if (text === undefined) return def;
  return text === 'on' || text === 'yes' || text === 'true' || text === 'y';
}

/** A boolean option read straight from a dictionary (typed, or text from a default QEMU set), false when unset. */
export function boolOption(options: Options, name: string): boolean {
  return optBool(name in options ? optText(options[name]) : undefined, false);
}

/** qobject_is_equal: same type and value; a missing value equals nothing. */
export function qobjectEqual(a: unknown, b: unknown): boolean {
  if (a === undefined || b === undefined) return false;
  if (a === null || b === null) return a === b;
  if (typeof a !== typeof b) return false;
  if (typeof a !== 'object') return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  return ka.length === kb.length && ka.every((k) => qobjectEqual((a as Options)[k], (b as Options)[k]));
}

/**
 * bdrv_inherited_options: what a child opened (or reopened) along with its
 * parent takes from the parent's options where its own do not say — the
 * cache flags and force-share; read-only and auto-read-only, but a backing
 * child is read-only (and not auto-read-only) unless it says otherwise;
 * and discard=unmap, as the parent filters discards itself.
 */
export function inheritOptions(cow: boolean, child: Options, parent: Options): void {
  copyDefault(child, parent, 'cache.direct');
  copyDefault(child, parent, 'cache.no-flush');
  copyDefault(child, parent, 'force-share');
  if (cow) {
    setDefault(child, 'read-only', 'on');
    setDefault(child, 'auto-read-only', 'off');
  } else {
    copyDefault(child, parent, 'read-only');
    copyDefault(child, parent, 'auto-read-only');
  }
  setDefault(child, 'discard', 'unmap');
}

/** update_options_from_flags: an opened node's options say its cache flags and read-only state, given or not. */
export function recordFlags(options: Options, flags: { cacheDirect: boolean; cacheNoFlush: boolean; readOnly: boolean; autoReadOnly: boolean }): void {
  if (!('cache.direct' in options)) options['cache.direct'] = flags.cacheDirect;
  if (!('cache.no-flush' in options)) options['cache.no-flush'] = flags.cacheNoFlush;
  if (!('read-only' in options)) options['read-only'] = flags.readOnly;
  if (!('auto-read-only' in options)) options['auto-read-only'] = flags.autoReadOnly;
}

/** The keys of a node's children ("file", "file.driver", …) leave its own options once the children are linked. */
export function dropChildKeys(options: Options, childNames: Iterable<string>): void {
  for (const name of childNames) {
    delete options[name];
    extractSub(options, `${name}.`);
  }
}

export const SIZE_HINT = 'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.';

/** parse_option_number: qemu_strtou64 (any base; a minus wraps, as strtoull's does), refused with its messages. */
export function parseNumberOption(name: string, text: string): bigint {
  const m = /^\s*([-+]?)(0x[0-9a-f]+|0[0-7]*|[1-9]\d*)$/i.exec(text);
  if (!m) throw new BlockError('INVALID_ARGUMENT', `Parameter '${name}' expects a number`);
  const v = BigInt(m[2]!);
  if (v >= 1n << 64n) throw new BlockError('INVALID_ARGUMENT', `Value '${text}' is too large for parameter '${name}'`);
  return m[1] === '-' && v !== 0n ? (1n << 64n) - v : v;
}

/** parse_option_size: a QemuOpts size (suffixes allowed), refused with its messages. */
export function parseSizeOption(name: string, text: string): bigint {
  const r = parseStrtosz(text);
  if (r.ok) return r.value;
  if (r.error === 'ERANGE') throw new BlockError('INVALID_ARGUMENT', `Value '${text}' is out of range for parameter '${name}'`);
  throw new BlockError('INVALID_ARGUMENT', `Parameter '${name}' expects a non-negative number below 2^64`, {
    hint: SIZE_HINT,
  });
}
