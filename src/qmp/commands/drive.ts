import type { BlockGraph } from '../../blockdev/graph.js';
import { isNbdFilename, probeNbdFormat } from '../../blockdev/nbd-filename.js';
import type { BlockNode } from '../../blockdev/node.js';
import { protocolOfFilename } from '../../blockdev/protocol-filename.js';
import { type BlockdevSpec, type ImplicitBackingOptions, implicitBackingOptions, flagOptionKeys, openBlockdev, PROTOCOLS } from '../../blockdev/open.js';
import { jsonFilenameSpec } from '../../blockdev/json-filename.js';
import { QCOW2_OPTIONS } from '../../blockdev/drivers/qcow2-options.js';
import { parseSizeOption } from '../../blockdev/options.js';
import { enableIoLimits, setIoLimits } from '../../blockdev/throttle/io-limits.js';
import { BlockError } from '../../image/errors.js';
import { probeFormat } from '../../image/probe.js';
import type { DrivePlan } from '../../machine/drive.js';
import { appendTempSnapshot } from '../../blockdev/temp-snapshot.js';
import { QmpError } from '../error.js';
import { BlockdevOptions } from '../schema/block-core.js';
import { visitKeyval } from '../schema/keyval-visit.js';

/**
 * blockdev_init for a -drive: its BlockBackend, named by the drive's id,
 * with a node opened from `file=` and the options left (or no medium when
 * there is neither), its error actions and write cache mode. `warn`
 * receives the lines QEMU prints on the way (a probed raw image).
 */
export async function addDrive(graph: BlockGraph, plan: DrivePlan, warn: (text: string) => void): Promise<void> {
  const empty = (plan.file === undefined || plan.file === '') && plan.options.size === 0;
  // The name is checked before the node opens only for an empty drive; otherwise monitor_add_blk runs after the open.
  let spec: BlockdevSpec | undefined;
  // The probed-raw warning comes from raw's open: after the option checks that precede any open (force-share's).
  let warning: string | undefined;
  if (!empty) spec = await driveSpec(plan, (text) => (warning = text));
  const early = (err: unknown) => err instanceof Error && err.message === 'force-share=on can only be used with read-only images';
  const b = graph.backends.add(plan.id);
  try {
    b.drive = { type: plan.type, bus: plan.bus, unit: plan.unit, mediaCd: plan.mediaCd };
    b.rootState = { readOnly: plan.readOnly, detectZeroes: plan.detectZeroes };
    b.writeCache = plan.writeCache;
    b.onReadError = plan.onReadError;
    b.onWriteError = plan.onWriteError;
    if (spec) {
      let node;
      try {
        node = await openBlockdev(graph, spec, false);
      } catch (err) {
        if (warning !== undefined && !early(err)) warn(warning);
        throw err;
      }
      if (warning !== undefined) warn(warning);
      const given = givenTrees.get(spec);
      if (given) keepStringOptions(node, given);
      // BDRV_O_SNAPSHOT: the image (opened read-only) under a temporary overlay that takes the writes.
      if (plan.snapshot) {
        const image = node;
        node = await appendTempSnapshot(graph, image, plan.readOnly).catch(async (err: unknown) => {
          await graph.discard(image);
          throw err;
        });
      }
      node.settings = { ...node.settings, detectZeroes: plan.detectZeroes };
      await b.blk.insert(node);
    }
    // blockdev_init: the limits once the BlockBackend exists, in the group named or the drive's own.
    if (plan.throttle) {
      enableIoLimits(b.blk, graph.throttleGroups, plan.throttle.group ?? plan.id);
      setIoLimits(b.blk, plan.throttle.cfg);
    }
  } catch (err) {
    await graph.backends.remove(b);
    throw err;
  }
}

/**
 * The null drivers read `size` as a QemuOpts size (null_runtime_opts), and
 * blkdebug its constraints (align, max-transfer, …), so a -drive or qemu-io
 * may write them with a suffix ("1M"); -blockdev's are plain ints.
 */
function sizeOptions(tree: Record<string, unknown>): void {
  const keys = tree['driver'] === 'null-co' || tree['driver'] === 'null-aio' ? ['size'] : tree['driver'] === 'blkdebug' ? BLKDEBUG_SIZES : tree['driver'] === 'qcow2' ? QCOW2_SIZES : [];
  for (const k of keys) {
    const v = tree[k];
    if (typeof v !== 'string') continue;
    tree[k] = String(parseSizeOption(k, v));
  }
  // The children's options, at any depth (file.align=4k under a format).
  for (const v of Object.values(tree)) if (typeof v === 'object' && v !== null && !Array.isArray(v)) sizeOptions(v as Record<string, unknown>);
}

/** blkdebug's constraint options, QemuOpts sizes in its runtime options (suffixes allowed). */
const BLKDEBUG_SIZES = ['align', 'max-transfer', 'opt-write-zero', 'max-write-zero', 'opt-discard', 'max-discard'];

/** qcow2's cache sizes, QemuOpts sizes in its runtime options (iotest 103's cache-size=1.25M). */
const QCOW2_SIZES = ['cache-size', 'l2-cache-size', 'l2-cache-entry-size', 'refcount-cache-size'];

/** The options of a -drive as written (strings), by the spec made from them. */
const givenTrees = new WeakMap<BlockdevSpec, Record<string, unknown>>();

/**
 * A -drive's options are QemuOpts strings, and QEMU's nodes keep them so
 * (its json: file names show "read-zeroes": "on" where -blockdev has
 * true): each option of the node and its children given as a string takes
 * back that string.
 */
function keepStringOptions(node: BlockNode, tree: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(node.options)) {
    if (typeof v === 'string') continue;
    let at: unknown = tree;
    for (const part of k.split('.')) at = typeof at === 'object' && at !== null ? (at as Record<string, unknown>)[part] : undefined;
    if (typeof at === 'string') node.options[k] = at;
  }
  for (const c of node.childList()) {
    const sub = tree[c.name];
    if (typeof sub === 'object' && sub !== null && !Array.isArray(sub)) keepStringOptions(c.node, sub as Record<string, unknown>);
  }
}

/** The node's options as bdrv_open gets them: the pseudo-protocol of `file=` resolved, the format probed if not given. */
function driveSpec(plan: DrivePlan, warn: (text: string) => void): Promise<BlockdevSpec> {
  const flat = new Map(plan.options);
  // With snapshot=on the image itself is opened as a backing file is: read-only (bdrv_backing_options).
  flat.set('read-only', plan.readOnly || plan.snapshot ? 'on' : 'off');
  if (!flat.has('auto-read-only')) flat.set('auto-read-only', 'on');
  return filenameOptionsSpec(plan.file === '' ? undefined : plan.file, flat, warn);
}

/**
 * bdrv_open(filename, options) as blockemu's open takes it: the flat
 * QemuOpts-style options (dotted keys, string values; `aio` a flag for the
 * file node) and a file name — `json:{…}`, a pseudo-protocol
 * (blkdebug:CONF:IMG, nbd:…, null-co://) or a host path — resolved into one
 * BlockdevSpec, the format probed when no driver is given (`warn` gets the
 * probed-raw warning). -drive and qemu-io's blk_new_open both open so.
 */
export async function filenameOptionsSpec(file: string | undefined, options: ReadonlyMap<string, string>, warn: (text: string) => void): Promise<BlockdevSpec> {
  const flat = new Map(options);
  const aio = flat.get('aio');
  let driver = flat.get('driver');
  let proto: Record<string, unknown> | undefined;
  let probeTarget: string | undefined;
  let noBacking = false;
  if (file?.startsWith('json:')) {
    const j = (await jsonFilenameSpec(file, driver)) as Record<string, unknown>;
    // Options given beside the name win over the name's own (iotest 089's option merging).
    driver ??= String(j['driver']);
    // 'backing': null in a json: name opens no backing file (bdrv_open_inherit's BDRV_O_NO_BACKING); the keyval visitor has no null.
    if (j['backing'] === null) {
      delete j['backing'];
      noBacking = !flat.has('backing');
    }
    proto = j;
  } else if (file !== undefined) {
    ({ proto, probeTarget } = protocolOfFilename(file));
    // driver=blkdebug with a plain file name: the name is its image's (blkdebug_parse_filename's x-image).
    if (driver === 'blkdebug' && proto['driver'] !== 'blkdebug') proto = { driver: 'blkdebug', image: proto };
    if (isNbdFilename(file) && driver === undefined) driver = await probeNbdFormat(file);
    if (driver === undefined) {
      driver = probeTarget === undefined ? 'raw' : await probeFormat(probeTarget).catch((err: unknown) => openFailure(probeTarget!, err));
      if (driver === 'raw') warn(probedRawWarning(file));
    }
  }
  const fileName = flat.get('file.filename');
  if (driver === undefined && file === undefined && fileName !== undefined && !flat.has('file.driver')) {
    // Only the protocol's options: the format is probed from what they open (bdrv_open_inherit's probe).
    driver = await probeFormat(fileName).catch((err: unknown) => openFailure(fileName, err));
    if (driver === 'raw') warn(probedRawWarning(fileName));
  }
  if (driver === undefined && file === undefined && [...flat.keys()].some((k) => k.startsWith('file.'))) {
    // Only a protocol named by its options (file.driver=blkdebug,…): bdrv_open probes what it reads. Through blkdebug
    // that is its image's bytes; through blkverify the test image's guest data, taken as raw (blockemu assumes no
    // format header there).
    const image = probedFile(nest(flat)['file']);
    driver = image !== undefined ? await probeFormat(image).catch((err: unknown) => openFailure(image, err)) : 'raw';
    // QEMU's warning names the protocol node's own file name, which a blkverify's is not here: named only for a file.
    if (driver === 'raw' && image !== undefined) warn(probedRawWarning(image));
  }
  if (driver === undefined) throw new BlockError('INVALID_ARGUMENT', "Must specify either driver or file");
  flat.set('driver', driver);
  flat.delete('aio');
  // qcow2's runtime options are QemuOpts its driver parses (qcow2_update_options), not the schema's typed members:
  // kept as text, so the driver checks them in its words ('overlap-check' beside 'overlap-check.template' included).
  const runtime: Record<string, string> = {};
  if (driver === 'qcow2') {
    for (const k of QCOW2_OPTIONS) {
      const v = flat.get(k);
      if (v !== undefined) (runtime[k] = v), flat.delete(k);
    }
    // encrypt.* too: qcow2_update_options_prepare takes them out itself, so none is visited (no encrypt.format needed).
    for (const [k, v] of [...flat]) if (k.startsWith('encrypt.')) (runtime[k] = v), flat.delete(k);
  }
  const tree = nest(flat);
  if (proto) {
    const p = stringLeaves(proto) as Record<string, unknown>;
    // The file name is the node itself when the driver is its protocol (or json: gave the whole tree), else the format's file child.
    if (file!.startsWith('json:') || p['driver'] === driver) mergeUnder(tree, p);
    else tree['file'] = placeProtocol((tree['file'] as Record<string, unknown> | undefined) ?? {}, p);
  }
  // -drive's aio is a flag in QEMU (BDRV_O_NATIVE_AIO), the file node's default, not one of its options: a reopen
  // that leaves aio out does not try to reset it (iotest 165).
  let aioAsFlag = false;
  protocolFiles(tree);
  // A json: name's own encrypt object (json:{"encrypt.key-secret": …}) is taken out as the options' encrypt.* are.
  const topEncrypt = tree['encrypt'];
  if (driver === 'qcow2' && typeof topEncrypt === 'object' && topEncrypt !== null) {
    for (const [k, v] of Object.entries(topEncrypt)) if (typeof v === 'string') runtime[`encrypt.${k}`] ??= v;
    delete tree['encrypt'];
  }
  if (aio !== undefined) {
    const at = tree['driver'] === 'file' ? tree : (tree['file'] as Record<string, unknown> | undefined);
    if (at?.['driver'] === 'file' && at['aio'] === undefined) (at['aio'] = aio), (aioAsFlag = true);
  }
  await probeBackingFormats(tree);
  await probeDataChildren(tree, warn);
  const backing = takeImplicitBacking(tree);
  const given = structuredClone(tree);
  sizeOptions(tree);
  // A qcow2 child's encrypt.* (backing.encrypt.key-secret) is taken out as the top node's is: the QDict path checks none.
  const encrypts = takeChildEncrypt(tree);
  let typed: Record<string, unknown>;
  try {
    typed = visitKeyval(BlockdevOptions, tree) as Record<string, unknown>;
  } catch (err) {
    throw unsupportedOption(err, driver, tree);
  }
  for (const { path, values } of encrypts) {
    let at: unknown = typed;
    for (const k of path) at = (at as Record<string, unknown> | undefined)?.[k];
    if (typeof at === 'object' && at !== null) Object.assign(at, values);
  }
  const spec = typed as unknown as BlockdevSpec;
  Object.assign(spec, runtime);
  if (noBacking) spec['backing'] = null;
  givenTrees.set(spec, given);
  if (aioAsFlag) {
    const fileSpec = spec.driver === 'file' ? spec : (spec['file'] as BlockdevSpec);
    flagOptionKeys.set(fileSpec, ['aio']);
  }
  if (backing) implicitBackingOptions.set(spec, backing);
  return spec;
}

/** The encrypt.* options of the qcow2 nodes below the top, taken out of the tree, as flat strings by the node's path. */
function takeChildEncrypt(tree: Record<string, unknown>, path: string[] = []): { path: string[]; values: Record<string, string> }[] {
  const out: { path: string[]; values: Record<string, string> }[] = [];
  for (const [k, v] of Object.entries(tree)) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) continue;
    const child = v as Record<string, unknown>;
    const enc = child['encrypt'];
    if (child['driver'] === 'qcow2' && typeof enc === 'object' && enc !== null && !Array.isArray(enc)) {
      const values: Record<string, string> = {};
      for (const [ek, ev] of Object.entries(enc)) if (typeof ev === 'string') values[`encrypt.${ek}`] = ev;
      delete child['encrypt'];
      out.push({ path: [...path, k], values });
    }
    out.push(...takeChildEncrypt(child, [...path, k]));
  }
  return out;
}

/**
 * `backing.*` keys with no driver and no file (`backing.node-name=mid`):
 * options for the backing file the image's header names, which bdrv_open
 * opens with them; taken out of the tree the schema visits.
 */
function takeImplicitBacking(tree: Record<string, unknown>): ImplicitBackingOptions | undefined {
  const b = tree['backing'];
  if (typeof b !== 'object' || b === null || Array.isArray(b) || 'file' in b) return undefined;
  // backing.driver=FORMAT alone is the format the header's backing file is opened with (iotest 114); any other driver
  // is a whole node of its own.
  const driver = (b as Record<string, unknown>)['driver'];
  if (driver !== undefined && driver !== 'qcow2' && driver !== 'raw') return undefined;
  delete tree['backing'];
  return implicitOptions(b as Record<string, unknown>, 'backing');
}

function implicitOptions(o: Record<string, unknown>, path: string): ImplicitBackingOptions {
  const out: ImplicitBackingOptions = {};
  for (const [k, v] of Object.entries(o)) {
    if (k === 'node-name' && typeof v === 'string') out['node-name'] = v;
    else if (k === 'driver' && typeof v === 'string') out.driver = v;
    else if (k === 'backing' && typeof v === 'object' && v !== null && !Array.isArray(v)) out.backing = implicitOptions(v as Record<string, unknown>, `${path}.backing`);
    else if (k === 'backing' && typeof v === 'string') out.backing = v;
    else throw new BlockError('UNSUPPORTED', `'${path}.${k}' for the backing file the image names is not supported by blockemu (only node-name, driver and backing); add the backing node with -blockdev instead`);
  }
  return out;
}

/**
 * A `file` child given by its file name alone (`file.file.filename=X` under
 * a format over a filter): bdrv_open of a protocol child takes the driver
 * from the name's prefix, which for a plain path is `file`.
 */
function protocolFiles(tree: Record<string, unknown>): void {
  // A format's file, a blkdebug's image, a qcow2's data file, a quorum's children, a blkverify's raw copy and test image.
  const listed = Array.isArray(tree['children']) ? (tree['children'] as unknown[]) : [];
  for (const f of [tree['file'], tree['image'], tree['data-file'], tree['raw'], tree['test'], ...listed]) {
    if (typeof f !== 'object' || f === null || Array.isArray(f)) continue;
    const child = f as Record<string, unknown>;
    if (child['driver'] === undefined && typeof child['filename'] === 'string') child['driver'] = 'file';
    protocolFiles(child);
  }
}

/**
 * Data children given without a driver: a blkverify's image under test
 * (`test.file.filename=X`, or `blkverify:RAW:X`) and a quorum's children
 * (`children.0.file.filename=X`, iotest 030): the format probed from the
 * file, as bdrv_open_child probes it (they are data children, not
 * protocols). Anywhere in the tree.
 */
async function probeDataChildren(tree: Record<string, unknown>, warn: (text: string) => void): Promise<void> {
  const listed = Array.isArray(tree['children']) ? (tree['children'] as unknown[]) : [];
  const quorum = tree['driver'] === 'quorum';
  const probed = tree['driver'] === 'blkverify' ? [tree['test']] : quorum ? listed : [];
  for (const c of probed) {
    if (typeof c !== 'object' || c === null || Array.isArray(c)) continue;
    const t = c as Record<string, unknown>;
    const path = t['driver'] === undefined ? probedFile(t['file']) : undefined;
    if (path === undefined) continue;
    t['driver'] = await probeFormat(path).catch((err: unknown) => openFailure(path, err));
    // A quorum child's probe warns as any probed raw image does (bdrv_open_inherit).
    if (quorum && t['driver'] === 'raw') warn(probedRawWarning(path));
  }
  for (const c of [tree['file'], tree['image'], tree['raw'], tree['test'], ...listed]) {
    if (typeof c === 'object' && c !== null && !Array.isArray(c)) await probeDataChildren(c as Record<string, unknown>, warn);
  }
}

/** The host file a format probe over this protocol node reads: a file node's, or through blkdebug its image's. */
function probedFile(node: unknown): string | undefined {
  if (typeof node !== 'object' || node === null || Array.isArray(node)) return undefined;
  const n = node as Record<string, unknown>;
  if (n['driver'] === 'blkdebug') return probedFile(n['image']);
  return (n['driver'] === undefined || n['driver'] === 'file') && typeof n['filename'] === 'string' ? n['filename'] : undefined;
}

/**
 * `backing.file.filename=X` without `backing.driver`: bdrv_open of the
 * backing child probes its format from the file, as it does the drive's
 * own (iotest 130); so on down its own backing options.
 */
async function probeBackingFormats(tree: Record<string, unknown>): Promise<void> {
  const b = tree['backing'];
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return;
  const backing = b as Record<string, unknown>;
  const f = backing['file'];
  if (backing['driver'] === undefined && typeof f === 'object' && f !== null && !Array.isArray(f)) {
    const file = f as Record<string, unknown>;
    if (typeof file['filename'] === 'string' && (file['driver'] === undefined || file['driver'] === 'file')) {
      const path = file['filename'];
      file['driver'] = 'file';
      backing['driver'] = await probeFormat(path).catch((err: unknown) => openFailure(path, err));
    }
  }
  protocolFiles(backing);
  await probeBackingFormats(backing);
}

/**
 * The file name goes down the `file` children while they are formats (file.driver=qcow2 under raw:
 * iotest 120), as bdrv_open_child hands the name on, and opens at the first protocol.
 */
function placeProtocol(child: Record<string, unknown>, proto: Record<string, unknown>): Record<string, unknown> {
  const d = child['driver'];
  // A blkdebug given a plain file name passes it to its image (blkdebug_parse_filename's x-image).
  if (d === 'blkdebug' && proto['driver'] !== 'blkdebug') {
    child['image'] = placeProtocol((child['image'] as Record<string, unknown> | undefined) ?? {}, proto);
    return child;
  }
  // So does blkverify to the image under test, whose format is probed (blkverify_parse_filename's x-image).
  if (d === 'blkverify' && proto['driver'] !== 'blkverify') {
    const test = (child['test'] as Record<string, unknown> | undefined) ?? {};
    child['test'] = typeof test['driver'] === 'string' ? placeProtocol(test, proto) : { ...test, file: placeProtocol((test['file'] as Record<string, unknown> | undefined) ?? {}, proto) };
    return child;
  }
  if (typeof d !== 'string' || d === proto['driver'] || PROTOCOLS.has(d)) return mergeUnder(child, proto);
  child['file'] = placeProtocol((child['file'] as Record<string, unknown> | undefined) ?? {}, proto);
  return child;
}

/**
 * Adds `from`'s members to `into` where the user gave none (the drive's own
 * dotted keys win). A child the file name opens (blkdebug's image) goes
 * below a format the user named for it, as the child's file name would
 * (blkdebug::IMG with image.driver=qcow2: a qcow2 over IMG).
 */
function mergeUnder(into: Record<string, unknown>, from: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(from)) {
    const cur = into[k];
    if (cur === undefined) into[k] = v;
    else if (typeof cur === 'object' && cur !== null && typeof v === 'object' && v !== null) {
      if (typeof (v as Record<string, unknown>)['driver'] === 'string') placeProtocol(cur as Record<string, unknown>, v as Record<string, unknown>);
      else mergeUnder(cur as Record<string, unknown>, v as Record<string, unknown>);
    }
  }
  return into;
}

/** JSON scalars as the strings the keyval visitor reads (QEMU's QDict from json: is typed; the values are the same). */
function stringLeaves(v: unknown): unknown {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return v.map(stringLeaves);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, stringLeaves(x)]));
  return v;
}

/** Dotted keys as the nested tree the keyval visitor takes. */
export function nest(flat: ReadonlyMap<string, string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of flat) {
    const parts = key.split('.');
    let at = root;
    for (const p of parts.slice(0, -1)) at = (typeof at[p] === 'object' ? at[p] : (at[p] = {})) as Record<string, unknown>;
    at[parts[parts.length - 1]!] = value;
  }
  return listify(root) as Record<string, unknown>;
}

/** qdict_crumple's lists: a level whose keys are 0, 1, … in order is an array (inject-error.0.event=…). */
function listify(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  for (const k of keys) o[k] = listify(o[k]);
  return keys.length > 0 && keys.every((k, i) => k === String(i)) ? keys.map((k) => o[k]) : o;
}

/** bdrv_open's words for an option the driver does not have. */
function unsupportedOption(err: unknown, driver: string, tree: Record<string, unknown>): unknown {
  const desc = err instanceof QmpError ? err.desc : '';
  // A driver name the schema does not know: bdrv_find_format's miss.
  const unknown = /^Parameter '(?:[^']*\.)?driver' does not accept value '([^']*)'$/.exec(desc);
  if (unknown) return new BlockError('INVALID_ARGUMENT', `Unknown driver '${unknown[1]}'`);
  // A child left out: bdrv_open_child's words.
  const missing = /^Parameter '(?:[^']*\.)?(file|image|target)' is missing$/.exec(desc);
  if (missing) return new BlockError('INVALID_ARGUMENT', `A block device must be specified for "${missing[1]}"`);
  const m = /^Parameter '([^']+)' is unexpected$/.exec(desc);
  if (!m) return err;
  let key = m[1]!;
  const dot = key.indexOf('.');
  if (dot < 0) {
    // A dotted key no driver knows (throttling.foo=) is still one flat option in bdrv_open's QDict: named whole.
    for (let v = tree[key]; typeof v === 'object' && v !== null && !Array.isArray(v); ) {
      const first = Object.keys(v)[0];
      if (first === undefined) break;
      key += `.${first}`;
      v = (v as Record<string, unknown>)[first];
    }
    const what = PROTOCOLS.has(driver) ? `Block protocol '${driver}' doesn't support` : `Block format '${driver}' does not support`;
    return new BlockError('INVALID_ARGUMENT', `${what} the option '${key}'`);
  }
  const child = tree[key.slice(0, dot)] as Record<string, unknown> | undefined;
  const childDriver = typeof child?.['driver'] === 'string' ? child['driver'] : 'file';
  return new BlockError('INVALID_ARGUMENT', `Block protocol '${childDriver}' doesn't support the option '${key.slice(dot + 1)}'`);
}

export function openFailure(path: string, err: unknown): never {
  if (err instanceof BlockError && err.message.startsWith('Could not open')) throw err;
  const code = (err as { code?: string; errno?: string }).code ?? (err as { errno?: string }).errno;
  const why = code === 'ENOENT' ? 'No such file or directory' : code === 'EACCES' ? 'Permission denied' : err instanceof Error ? err.message : String(err);
  throw new BlockError('IO', `Could not open '${path}': ${why}`, { cause: err });
}

function probedRawWarning(file: string): string {
  return (
    `WARNING: Image format was not specified for '${file}' and probing guessed raw.\n` +
    '         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n' +
    "         Specify the 'raw' format explicitly to remove the restrictions.\n"
  );
}
