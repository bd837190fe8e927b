import { BlockError } from '../../image/errors.js';
import { OVERLAP_MODES } from '../../image/qcow2/overlap.js';
import { joinOptions, optBool, type Options, parseNumberOption, parseSizeOption } from '../options.js';

/**
 * qcow2's runtime options (qcow2_runtime_opts) as a reopen checks them
 * (qcow2_update_options_prepare): all are taken; cache sizes, lazy
 * refcounts, overlap checks and the encryption format are checked with
 * QEMU's words. blockemu sizes its caches its own way and writes refcounts
 * eagerly; lazy refcounts and the overlap checks' set are what it uses.
 */

/** overlap-check.<flag>, in the order of their bits (overlap.ts OL). */
const OVERLAP_FLAGS = ['main-header', 'active-l1', 'active-l2', 'refcount-table', 'refcount-block', 'snapshot-table', 'inactive-l1', 'inactive-l2', 'bitmap-directory'];

/** Also the options a reopen may leave out, resetting them (qcow2's mutable_opts are the same list). */
export const QCOW2_OPTIONS = [
  'lazy-refcounts',
  'pass-discard-request',
  'pass-discard-snapshot',
  'pass-discard-other',
  'overlap-check',
  'overlap-check.template',
  ...OVERLAP_FLAGS.map((f) => `overlap-check.${f}`),
  'cache-size',
  'l2-cache-size',
  'l2-cache-entry-size',
  'refcount-cache-size',
  'cache-clean-interval',
];

const MIN_CLUSTER_SIZE = 512;
const MIN_L2_CACHE_SIZE = 2;
const MIN_REFCOUNT_CACHE_SIZE = 4;
const DEFAULT_L2_CACHE_MAX_SIZE = 32 * 1024 * 1024;
const INT_MAX = 2 ** 31 - 1;
const UINT_MAX = 2 ** 32 - 1;

/** The image facts the checks depend on. */
export interface Qcow2Facts {
  clusterSize: number;
  virtualSize: number;
  version: number;
  /** Bytes per L2 entry (16 with extended L2). */
  l2EntrySize: number;
  /** The header names an encryption method (whose format option the image's open checks). */
  encrypted?: boolean;
}

const fail = (msg: string) => new BlockError('INVALID_ARGUMENT', msg);
/** A size option (a suffix allowed), or `def` when not given. */
const size = (opts: ReadonlyMap<string, string>, name: string, def: number): number => {
  const text = opts.get(name);
  return text === undefined ? def : Number(parseSizeOption(name, text));
};

const SIZES = new Set(['cache-size', 'l2-cache-size', 'l2-cache-entry-size', 'refcount-cache-size']);
const STRINGS = new Set(['overlap-check', 'overlap-check.template']);

/** qemu_opts_absorb_qdict's parse of each value by its type in qcow2_runtime_opts, with QemuOpts' messages. */
function checkRuntimeTypes(opts: ReadonlyMap<string, string>): void {
  for (const [name, text] of opts) {
    if (STRINGS.has(name)) continue;
    if (SIZES.has(name)) {
      parseSizeOption(name, text);
    } else if (name === 'cache-clean-interval') {
      parseNumberOption(name, text);
    } else if (!['on', 'yes', 'true', 'y', 'off', 'no', 'false', 'n'].includes(text)) {
      throw fail(`Parameter '${name}' expects 'on' or 'off'`);
    }
  }
}

/** read_cache_sizes: the L2 and refcount cache sizes the options ask for, refused as QEMU refuses them. */
function readCacheSizes(opts: ReadonlyMap<string, string>, f: Qcow2Facts): { l2: number; entry: number; refcount: number } {
  const minRefcount = MIN_REFCOUNT_CACHE_SIZE * f.clusterSize;
  const maxL2Entries = Math.ceil(f.virtualSize / f.clusterSize);
  const maxL2Cache = Math.ceil((maxL2Entries * f.l2EntrySize) / f.clusterSize) * f.clusterSize;
  const combinedSet = opts.has('cache-size');
  const l2Set = opts.has('l2-cache-size');
  const refcountSet = opts.has('refcount-cache-size');
  const combined = size(opts, 'cache-size', 0);
  const l2Max = size(opts, 'l2-cache-size', DEFAULT_L2_CACHE_MAX_SIZE);
  let refcount = size(opts, 'refcount-cache-size', 0);
  let entry = size(opts, 'l2-cache-entry-size', f.clusterSize);
  let l2 = Math.min(maxL2Cache, l2Max);
  if (combinedSet) {
    if (l2Set && refcountSet) throw fail('cache-size, l2-cache-size and refcount-cache-size may not be set at the same time');
    if (l2Set && l2Max > combined) throw fail('l2-cache-size may not exceed cache-size');
    if (refcount > combined) throw fail('refcount-cache-size may not exceed cache-size');
    if (l2Set) refcount = combined - l2;
    else if (refcountSet) l2 = combined - refcount;
    else if (combined >= maxL2Cache + minRefcount) {
      l2 = maxL2Cache;
      refcount = combined - l2;
    } else {
      refcount = Math.min(combined, minRefcount);
      l2 = combined - refcount;
    }
  }
  // A cache too small for the whole disk takes 4 KiB entries, unless told otherwise.
  if (l2 < maxL2Cache && !opts.has('l2-cache-entry-size')) entry = Math.min(f.clusterSize, 4096);
  if (entry < MIN_CLUSTER_SIZE || entry > f.clusterSize || (entry & (entry - 1)) !== 0) {
    throw fail(`L2 cache entry size must be a power of two between ${MIN_CLUSTER_SIZE} and the cluster size (${f.clusterSize})`);
  }
  return { l2, entry, refcount };
}

/**
 * qcow2_update_options_prepare's checks, in its order. `encrypt` holds
 * the encrypt.* options (the image has no encryption: blockemu opens
 * none); `lazyNow` is whether the image uses lazy refcounts now.
 */
export function checkQcow2Options(opts: ReadonlyMap<string, string>, encrypt: Options, f: Qcow2Facts, lazyNow: boolean): { lazyRefcounts: boolean; overlapCheck: number } {
  checkRuntimeTypes(opts);
  const c = readCacheSizes(opts, f);
  if (Math.max(Math.floor(c.l2 / c.entry), MIN_L2_CACHE_SIZE) > INT_MAX) throw fail('L2 cache size too big');
  if (Math.max(Math.floor(c.refcount / f.clusterSize), MIN_REFCOUNT_CACHE_SIZE) > INT_MAX) throw fail('Refcount cache size too big');
  const interval = opts.get('cache-clean-interval');
  if (interval !== undefined && parseNumberOption('cache-clean-interval', interval) > BigInt(UINT_MAX)) throw fail('Cache clean interval too big');
  const lazyRefcounts = optBool(opts.get('lazy-refcounts'), lazyNow);
  if (lazyRefcounts && f.version < 3) {
    throw fail('Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level');
  }
  const check = opts.get('overlap-check');
  const template = opts.get('overlap-check.template');
  if (check !== undefined && template !== undefined && check !== template) {
    throw fail(`Conflicting values for qcow2 options 'overlap-check' ('${check}') and 'overlap-check.template' ('${template}')`);
  }
  const mode = check ?? template ?? 'cached';
  if (!['none', 'constant', 'cached', 'all'].includes(mode)) {
    throw fail(`Unsupported value '${mode}' for qcow2 option 'overlap-check'. Allowed are any of the following: none, constant, cached, all`);
  }
  const format = encrypt['format'];
  if (typeof format === 'string' && !f.encrypted) throw fail(`No encryption in image header, but options specified format '${format}'`);
  // The mode's set, each overlap-check.<flag> turning its bit on or off (bit i is OVERLAP_FLAGS[i], QCOW2_OL_*).
  let overlapCheck = 0;
  OVERLAP_FLAGS.forEach((flag, i) => {
    if (optBool(opts.get(`overlap-check.${flag}`), (OVERLAP_MODES[mode]! & (1 << i)) !== 0)) overlapCheck |= 1 << i;
  });
  return { lazyRefcounts, overlapCheck };
}

/**
 * qcow2_join_options: a reopen's new overlap template drops every old
 * overlap option, and a new cache-size the old L2 and refcount sizes;
 * then the old options fill in. An old cache-size goes when any cache
 * option is left and cache-size is not new (QEMU tests "any", not "all").
 */
export function joinQcow2Options(options: Options, old: Options): void {
  if ('overlap-check' in options || 'overlap-check.template' in options) {
    for (const k of ['overlap-check', 'overlap-check.template', ...OVERLAP_FLAGS.map((f) => `overlap-check.${f}`)]) delete old[k];
  }
  const newTotal = 'cache-size' in options;
  if (newTotal) {
    delete old['l2-cache-size'];
    delete old['refcount-cache-size'];
  }
  joinOptions(options, old);
  const anyCache = 'cache-size' in options || 'l2-cache-size' in options || 'refcount-cache-size' in options;
  if (anyCache && !newTotal) delete options['cache-size'];
}
