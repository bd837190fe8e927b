import { dirname, isAbsolute, resolve } from 'node:path';
import { encryptionFromOptions } from '../image/qcow2/crypto/open.js';
import { BlockError } from '../image/errors.js';
import { PERM_ALL, PERM_QAPI_NAMES, PERM_RESIZE, PERM_WRITE } from '../image/perm.js';
import { probeFormat } from '../image/probe.js';
import { CHILD_COW, CHILD_DATA, CHILD_FILTERED_PRIMARY, CHILD_IMAGE, CHILD_PRIMARY, type ChildOwner, cryptoChildPerm, defaultChildPerms, type NodeChild, type PermPair, rawChildPerm } from './child.js';
import { blkdebugChildPerm, BlkdebugNode, DEFAULT_IOTYPES, type InjectErrorRule, type SetStateRule } from './drivers/blkdebug.js';
import { CbwState, type OnCbwError } from './drivers/cbw-state.js';
import { cbwChildPerm, CopyBeforeWriteNode } from './drivers/copy-before-write.js';
import { CompressNode } from './drivers/compress.js';
import { corChildPerm, CopyOnReadNode } from './drivers/copy-on-read.js';
import { FileNode } from './drivers/file.js';
import { NbdNode, type NbdOptions } from './drivers/nbd.js';
import { NullNode } from './drivers/null.js';
import { Qcow2Node } from './drivers/qcow2.js';
import { LuksNode } from './drivers/luks.js';
import { QuorumNode, type QuorumReadPattern } from './drivers/quorum.js';
import { BlkverifyNode } from './drivers/blkverify.js';
import { RawNode } from './drivers/raw.js';
import { SNAPSHOT_ACCESS_CHILD_PERM, SnapshotAccessNode } from './drivers/snapshot-access.js';
import { readBlkdebugConfig } from './drivers/blkdebug-config.js';
import { BlockCopy, blockCopyClusterSize } from './block-copy.js';
import { type Clock, RealClock } from './clock.js';
import { ThrottleNode } from './drivers/throttle.js';
import type { ThrottleGroups } from './throttle/group.js';
import type { BlockGraph } from './graph.js';
import { attachChild, detachChild } from './graph-edit.js';
import { GraphTransaction } from './graph-transaction.js';
import type { BlockNode, IoType, NodeSettings } from './node.js';
import { hasProtocolPrefix, knownProtocol, protocolOfFilename, unopenableProtocol } from './protocol-filename.js';
import { boolOption, dropChildKeys, flattenQdict, inheritOptions, type Options, recordFlags } from './options.js';
import { jsonFilenameSpec } from './json-filename.js';

/**
 * Options of one node, as blockdev-add takes them after schema validation
 * (QAPI's BlockdevOptions: member names as in QEMU). Children are either
 * inline options or the name of an existing node.
 */
/**
 * Options for the backing file an image's header names, given without a
 * driver (a -drive's `backing.node-name=…`: QEMU's bdrv_open takes them
 * into the implicit backing file's options). Only a node name and, in turn,
 * the same for its own backing file: the values are not visited against a
 * schema here. Keyed by the spec of the node whose backing they are.
 */
export interface ImplicitBackingOptions {
  'node-name'?: string;
  /** The format to open it with, over the one the header names. */
  driver?: string;
  /** Options for its own backing file, or the name of a node to use as that (backing.backing=NODE). */
  backing?: ImplicitBackingOptions | string;
}
export const implicitBackingOptions = new WeakMap<BlockdevSpec, ImplicitBackingOptions>();

/** Keys of a spec that stand for open flags (-drive's aio): the driver reads them, bs->options does not keep them. */
export const flagOptionKeys = new WeakMap<BlockdevSpec, readonly string[]>();

export interface BlockdevSpec {
  driver: string;
  'node-name'?: string;
  'read-only'?: boolean;
  'auto-read-only'?: boolean;
  'force-share'?: boolean;
  [member: string]: unknown;
}
export type BlockdevRef = BlockdevSpec | string;

/** What a driver's opener gets besides its options. */
interface OpenContext {
  name: string;
  spec: BlockdevSpec;
  readOnly: boolean;
  /** The node's options after inheritance (bs->options while it opens). */
  options: Options;
  /** Opens (or finds) a child and links it with its role, its permissions checked before the driver uses it. */
  child(name: string, ref: unknown, role: number): Promise<NodeChild>;
  /** A node of the graph by name (a copy-on-read filter's bottom). */
  find(name: string): BlockNode | undefined;
  /** The graph's throttle groups (a throttle node joins one). */
  throttleGroups: ThrottleGroups;
  /** The graph's secrets and its AES policy (an encrypted qcow2 is unlocked with one). */
  graph: Pick<BlockGraph, 'secretBytes' | 'refuseAesEncryption'>;
  /** The graph's clock (virtual or real). */
  clock: Clock;
  /** A qcow2's backing child once its header is known: `spec.backing`, or the image's own backing file. */
  backing(header: { backingFile?: string; backingFormat?: string; filename: string }): Promise<NodeChild | undefined>;
}

type Opener = (ctx: OpenContext) => Promise<BlockNode>;

/** What a driver needs of a child, as QEMU's drv->bdrv_child_perm: also asked while the driver is still opening. */
type ChildPermFn = (spec: BlockdevSpec, role: number, writable: boolean, perm: number, shared: number, inactive?: boolean) => PermPair;

const num = (v: unknown, def: number): number => (typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : def);

const OPENERS: Record<string, Opener> = {
  file: ({ name, spec, readOnly, options }) => {
    // raw_open_common: Linux native AIO needs O_DIRECT.
    if (spec['aio'] === 'native' && !boolOption(options, 'cache.direct')) {
      throw new BlockError('INVALID_ARGUMENT', 'aio=native was specified, but it requires cache.direct=on, which was not specified.');
    }
    return FileNode.open(name, spec['filename'] as string, { readOnly, autoReadOnly: boolOption(options, 'auto-read-only'), locking: (spec['locking'] as 'on' | 'off' | 'auto' | undefined) ?? 'auto' });
  },
  // file-posix's device drivers: the file driver over a character or block device.
  host_device: ({ name, spec, readOnly, options }) =>
    FileNode.open(name, spec['filename'] as string, { readOnly, autoReadOnly: boolOption(options, 'auto-read-only'), locking: (spec['locking'] as 'on' | 'off' | 'auto' | undefined) ?? 'auto', driver: 'host_device' }),
  host_cdrom: ({ name, spec, readOnly, options }) =>
    FileNode.open(name, spec['filename'] as string, { readOnly, autoReadOnly: boolOption(options, 'auto-read-only'), locking: (spec['locking'] as 'on' | 'off' | 'auto' | undefined) ?? 'auto', driver: 'host_cdrom' }),
  raw: async ({ name, spec, readOnly, child }) => {
    const offset = num(spec['offset'], 0);
    const size = spec['size'] as number | undefined;
    // A window of the file is data; the whole file passes through as through a filter (raw_open).
    const file = await child('file', spec['file'], offset || size !== undefined ? CHILD_DATA | CHILD_PRIMARY : CHILD_FILTERED_PRIMARY);
    return new RawNode(name, file, offset, size, readOnly);
  },
  nbd: ({ name, spec, readOnly, options }) => {
    // No TLS objects exist here, so any id is one QEMU would not find either.
    if (spec['tls-creds'] !== undefined) throw new BlockError('NOT_FOUND', `No TLS credentials with id '${spec['tls-creds'] as string}'`);
    return NbdNode.open(name, {
      server: spec['server'] as NbdOptions['server'],
      export: spec['export'] as string | undefined,
      xDirtyBitmap: spec['x-dirty-bitmap'] as string | undefined,
      reconnectDelay: num(spec['reconnect-delay'], 0),
      openTimeout: num(spec['open-timeout'], 0),
      readOnly,
      autoReadOnly: boolOption(options, 'auto-read-only'),
    });
  },
  'null-co': async ({ name, spec, readOnly }) => new NullNode(name, 'null-co', num(spec['size'], 1 << 30), spec['read-zeroes'] === true, num(spec['latency-ns'], 0), readOnly),
  'null-aio': async ({ name, spec, readOnly }) => new NullNode(name, 'null-aio', num(spec['size'], 1 << 30), spec['read-zeroes'] === true, num(spec['latency-ns'], 0), readOnly),
  qcow2: async ({ name, spec, readOnly, child, backing, graph }) => {
    const file = await child('file', spec['file'], CHILD_IMAGE);
    // The runtime options (cache sizes, overlap checks, lazy refcounts) as qcow2_update_options reads them: flat text.
    const flat = flattenQdict(Object.fromEntries(Object.entries(spec).filter(([k]) => k !== 'file' && k !== 'backing' && k !== 'data-file')));
    const ref = spec['data-file'];
    // encrypt.format and encrypt.key-secret; the secret is looked up as the crypto layer opens (qcrypto_secret_lookup).
    const encryption = encryptionFromOptions(flat, (id) => graph.secretBytes(id), graph.refuseAesEncryption);
    return Qcow2Node.open(
      name,
      file,
      readOnly,
      backing,
      flat,
      {
        given: ref === undefined ? undefined : () => child('data-file', ref, CHILD_DATA),
        // bdrv_open_child of the header's name: a protocol node, the name as given (relative to the working directory).
        byName: (n) => child('data-file', protocolOfFilename(n).proto, CHILD_DATA),
      },
      encryption,
    );
  },
  luks: async ({ name, spec, readOnly, child, graph }) => {
    const file = await child('file', spec['file'], CHILD_IMAGE);
    const secret = spec['key-secret'];
    // The secret is looked up as the crypto layer opens (qcrypto_secret_lookup), after the file child is there.
    return LuksNode.open(name, file, readOnly, typeof secret === 'string' ? { key: () => graph.secretBytes(secret) } : {});
  },
  blkverify: async ({ name, spec, readOnly, child }) => {
    // blkverify_open: the raw copy first (bs->file, the filtered child), then the image under test.
    const raw = await child('raw', spec['raw'], CHILD_FILTERED_PRIMARY);
    const test = await child('test', spec['test'], CHILD_DATA);
    return new BlkverifyNode(name, raw, test, readOnly);
  },
  quorum: async ({ name, spec, readOnly, child }) => {
    const refs = Array.isArray(spec['children']) ? (spec['children'] as unknown[]) : [];
    const pattern = spec['read-pattern'];
    if (pattern !== undefined && pattern !== 'quorum' && pattern !== 'fifo') throw new BlockError('INVALID_ARGUMENT', 'Please set read-pattern as fifo or quorum');
    const o = {
      threshold: num(spec['vote-threshold'], 0),
      readPattern: (pattern ?? 'quorum') as QuorumReadPattern,
      blkverify: spec['blkverify'] === true,
      rewriteCorrupted: spec['rewrite-corrupted'] === true,
    };
    QuorumNode.check(refs.length, o);
    const links: NodeChild[] = [];
    for (const [i, ref] of refs.entries()) links.push(await child(`children.${i}`, ref, CHILD_DATA));
    const node = new QuorumNode(name, links, o, readOnly);
    node.checkLengths();
    return node;
  },
  compress: async ({ name, spec, readOnly, child }) => {
    const file = await child('file', spec['file'], CHILD_FILTERED_PRIMARY);
    return CompressNode.open(name, file, readOnly);
  },
  'copy-on-read': async ({ name, spec, readOnly, child, find }) => {
    const file = await child('file', spec['file'], CHILD_FILTERED_PRIMARY);
    return CopyOnReadNode.open(name, file, readOnly, spec['bottom'] as string | undefined, find);
  },
  throttle: async ({ name, spec, readOnly, child, throttleGroups }) => {
    const file = await child('file', spec['file'], CHILD_FILTERED_PRIMARY);
    return ThrottleNode.open(name, file, readOnly, spec['throttle-group'] as string | undefined, throttleGroups);
  },
  'copy-before-write': async ({ name, spec, readOnly, child, find, clock }) => {
    // cbw_open's order: the file, the target (its write permission checked as it is linked), then the bitmap.
    const file = await child('file', spec['file'], CHILD_FILTERED_PRIMARY);
    const target = await child('target', spec['target'], CHILD_DATA);
    const bm = spec['bitmap'] as { node: string; name: string } | undefined;
    let bitmap;
    if (bm) {
      const owner = find(bm.node);
      if (!owner) throw new BlockError('NOT_FOUND', `Node '${bm.node}' not found`);
      bitmap = owner.dirtyBitmaps.lookup(bm.name);
    }
    const clusterSize = blockCopyClusterSize(target.node);
    const state = new CbwState(new BlockCopy(file.node, target.node, clusterSize, { separateExtents: true }), {
      onCbwError: (spec['on-cbw-error'] as OnCbwError | undefined) ?? 'break-guest-write',
      timeoutNs: num(spec['cbw-timeout'], 0) * 1e9,
      // QEMU times copies in real time; a virtual clock would let a timeout expire while the copy's I/O is still under way.
      clock: clock.mode === 'real' ? clock : new RealClock(),
      bitmap,
    });
    return new CopyBeforeWriteNode(name, file, target, { state, copies: true }, readOnly);
  },
  'snapshot-access': async ({ name, spec, readOnly, child }) => {
    const file = await child('file', spec['file'], CHILD_DATA | CHILD_PRIMARY);
    return new SnapshotAccessNode(name, file, readOnly);
  },
  blkdebug: async ({ name, spec, readOnly, child }) => {
    // read_config: the config file's rules come first, then those of the options.
    const file = typeof spec['config'] === 'string' ? await readBlkdebugConfig(spec['config']) : { injectError: [], setState: [] };
    const image = await child('image', spec['image'], CHILD_FILTERED_PRIMARY);
    // qdict_flatten leaves an empty list as it is, and blkdebug takes only the rules under "inject-error." and
    // "set-state.": bdrv_open_inherit then refuses the key left over (set-state first, the QDict's order).
    for (const key of ['set-state', 'inject-error']) {
      if (Array.isArray(spec[key]) && (spec[key] as unknown[]).length === 0) throw new BlockError('INVALID_ARGUMENT', `Block protocol 'blkdebug' doesn't support the option '${key}'`);
    }
    const flag = (v: unknown) => v === true || v === 'on';
    const inject = [...file.injectError, ...((spec['inject-error'] as Record<string, unknown>[] | undefined) ?? [])].map(
      (r): InjectErrorRule => ({
        event: r['event'] as string,
        state: num(r['state'], 0),
        iotypes: r['iotype'] === undefined ? DEFAULT_IOTYPES : new Set([r['iotype'] as IoType]),
        errno: num(r['errno'], 5),
        sector: num(r['sector'], -1),
        once: flag(r['once']),
        immediately: flag(r['immediately']),
      }),
    );
    const setState = [...file.setState, ...((spec['set-state'] as Record<string, unknown>[] | undefined) ?? [])].map(
      (r): SetStateRule => ({ event: r['event'] as string, state: num(r['state'], 0), newState: num(r['new_state'], 0) }),
    );
    return new BlkdebugNode(name, image, inject, setState, readOnly, spec, permBits(spec['take-child-perms']), permBits(spec['unshare-child-perms']));
  },
};

/** QAPI's BlockPermission names as bits. */
function permBits(names: unknown): number {
  return ((names as string[] | undefined) ?? []).reduce((acc, n) => acc | (PERM_QAPI_NAMES.find(([, q]) => q === n)?.[0] ?? 0), 0);
}

const CHILD_PERMS: Record<string, ChildPermFn> = {
  'copy-before-write': (_spec, role, writable, perm, shared) => cbwChildPerm(role, writable, false, perm, shared),
  'snapshot-access': () => ({ ...SNAPSHOT_ACCESS_CHILD_PERM }),
  'copy-on-read': (_spec, _role, _writable, perm, shared, inactive) => corChildPerm(perm, shared, inactive),
  raw: (_spec, role, writable, perm, shared) => rawChildPerm(role, writable, perm, shared),
  luks: (_spec, role, writable, perm, shared) => cryptoChildPerm(role, writable, perm, shared),
  blkdebug: (spec, role, writable, perm, shared) =>
    blkdebugChildPerm(role, writable, perm, shared, permBits(spec['take-child-perms']), permBits(spec['unshare-child-perms'])),
};

/** Drivers whose node can be opened; others are refused with a message naming the driver. */
export const SUPPORTED_DRIVERS = Object.keys(OPENERS);

/** Registers additional drivers. */
export function registerDriver(driver: string, opener: Opener): void {
  OPENERS[driver] = opener;
}

/**
 * Opens a node and its inline children and registers them (blockdev-add).
 * Each child is linked, and its permissions checked (file nodes take
 * their lock bytes), before its parent's driver reads or writes it, as
 * in QEMU. On failure nothing stays registered, open, linked or locked.
 */
export async function openBlockdev(graph: BlockGraph, spec: BlockdevSpec, monitorOwned = true, parentReadOnly = false): Promise<BlockNode> {
  const opened: BlockNode[] = [];
  return GraphTransaction.run(async (tran) => {
    try {
      return await openNode(graph, tran, spec, monitorOwned, { readOnly: parentReadOnly, forceShare: false, settings: undefined, options: undefined, cow: false }, opened);
    } catch (err) {
      // The links go first (the transaction's undo), then the nodes this open created, newest first.
      await tran.abort();
      for (const n of opened.reverse()) await graph.discard(n);
      throw err;
    }
  });
}

/**
 * The parent side of the links a node's children get while the node
 * opens: named as the node will be, needing of them what its driver needs
 * with no parents of its own yet (QEMU attaches children to a node whose
 * driver is still opening). The node takes the links over once it exists.
 */
class OpeningParent implements ChildOwner {
  constructor(
    readonly nodeName: string,
    private readonly spec: BlockdevSpec,
    private readonly readOnly: boolean,
    /** Opened for an incoming migration (BDRV_O_INACTIVE): never writable, and others may write its children. */
    private readonly inactive: boolean,
  ) {}
  describe(): string {
    return `node '${this.nodeName}'`;
  }
  perms(role: number): PermPair {
    const fn = CHILD_PERMS[this.spec.driver];
    const writable = !this.readOnly && !this.inactive;
    const p = fn ? fn(this.spec, role, writable, 0, PERM_ALL, this.inactive) : defaultChildPerms(role, writable, 0, PERM_ALL);
    if (this.inactive) p.shared |= PERM_WRITE | PERM_RESIZE;
    return p;
  }
}

/** What an inline child takes from its parent when its own options do not say (bdrv_inherited_options). */
interface Inherited {
  readOnly: boolean;
  forceShare: boolean;
  settings: NodeSettings | undefined;
  /** The parent's options, which the node's own inherit from (none for a node the monitor adds). */
  options: Options | undefined;
  /** Whether the node is its parent's backing child. */
  cow: boolean;
}

/** Drivers QEMU opens as protocols (bdrv_file_open): no `file` child is opened before them. */
export const PROTOCOLS: ReadonlySet<string> = new Set(['file', 'host_device', 'host_cdrom', 'nbd', 'null-co', 'null-aio', 'blkdebug', 'blkverify']);

async function openNode(graph: BlockGraph, tran: GraphTransaction, spec: BlockdevSpec, monitorOwned: boolean, inherit: Inherited, opened: BlockNode[]): Promise<BlockNode> {
  const opener = OPENERS[spec.driver];
  if (!opener) throw new BlockError('UNSUPPORTED', `Driver '${spec.driver}' is not supported by blockemu (supported: ${SUPPORTED_DRIVERS.join(', ')})`);
  const parent = inherit.settings;
  const readOnly = spec['read-only'] ?? inherit.readOnly;
  const forceShare = spec['force-share'] ?? inherit.forceShare;
  // An inline child inherits discard and the cache flags from its parent (bdrv_inherited_options); detect-zeroes is its own.
  const cache = (spec['cache'] ?? {}) as { direct?: boolean; 'no-flush'?: boolean };
  const settings: NodeSettings = {
    detectZeroes: (spec['detect-zeroes'] as NodeSettings['detectZeroes'] | undefined) ?? 'off',
    discard: (spec['discard'] as NodeSettings['discard'] | undefined) ?? parent?.discard ?? 'ignore',
    cacheDirect: cache.direct ?? parent?.cacheDirect ?? false,
    cacheNoFlush: cache['no-flush'] ?? parent?.cacheNoFlush ?? false,
  };
  // bs->explicit_options and bs->options as QEMU has them while the node opens.
  const explicit = flattenQdict(spec);
  for (const k of flagOptionKeys.get(spec) ?? []) delete explicit[k];
  const options = { ...explicit };
  if (inherit.options) inheritOptions(inherit.cow, options, inherit.options);
  const inline = new Set<BlockNode>();
  const openInline = async (ref: BlockdevSpec, cow: boolean): Promise<BlockNode> => {
    // A backing image is opened read-only unless it says otherwise; other children inherit the parent's state.
    const n = await openNode(graph, tran, ref, false, { readOnly: cow ? true : readOnly, forceShare, settings, options, cow }, opened);
    inline.add(n);
    return n;
  };
  // A format node's inline file is opened before the node gets its name (bdrv_open_inherit), which orders query-named-block-nodes.
  const fileRef = spec['file'];
  const early = !PROTOCOLS.has(spec.driver) && typeof fileRef === 'object' && fileRef !== null ? await openInline(fileRef as BlockdevSpec, false) : undefined;
  const name = graph.assignName(spec['node-name']);
  if (forceShare && !readOnly) throw new BlockError('INVALID_ARGUMENT', 'force-share=on can only be used with read-only images');
  if (settings.detectZeroes === 'unmap' && settings.discard !== 'unmap') {
    throw new BlockError('INVALID_ARGUMENT', 'setting detect-zeroes to unmap is not allowed without setting discard operation to unmap');
  }
  const me = new OpeningParent(name, spec, readOnly, graph.openInactive);
  const child = async (childName: string, ref: unknown, role: number): Promise<NodeChild> => {
    if (ref === undefined) throw new BlockError('INVALID_ARGUMENT', `A block device must be specified for "${childName}"`);
    const node =
      childName === 'file' && early ? early : typeof ref === 'string' ? graph.find(ref) : await openInline(ref as BlockdevSpec, (role & CHILD_COW) !== 0);
    // bdrv_open_child attaches in a transaction of its own, finished at once: the child's permissions are in
    // force while the driver opens (a file node under auto-read-only is read-write by then, so qcow2 can mark its
    // persistent bitmaps in use); the open's own transaction detaches it again if the open fails.
    const attach = new GraphTransaction();
    let link: NodeChild;
    try {
      link = await attachChild(attach, me, childName, role, node, me.perms(role));
    } catch (err) {
      await attach.abort();
      throw err;
    }
    await attach.commit();
    tran.addUndo(() => detachChild(link));
    return link;
  };
  const backing = async (h: { backingFile?: string; backingFormat?: string; filename: string }): Promise<NodeChild | undefined> => {
    const ref = spec['backing'];
    if (ref === null) return undefined;
    if (ref !== undefined) {
      try {
        return await child('backing', ref, CHILD_COW);
      } catch (err) {
        throw backingError(err);
      }
    }
    if (h.backingFile === undefined) {
      const given = implicitBackingOptions.get(spec);
      if (given) throw new BlockError('INVALID_ARGUMENT', `Block format '${spec.driver}' does not support the option 'backing.${given['node-name'] !== undefined ? 'node-name' : Object.keys(given)[0]}'`);
      return undefined;
    }
    try {
      const over = implicitBackingOptions.get(spec);
      const implicit = await implicitBacking(h.filename, h.backingFile, over?.driver ?? h.backingFormat);
      if (over?.['node-name'] !== undefined) implicit.spec['node-name'] = over['node-name'];
      if (typeof over?.backing === 'string') implicit.spec['backing'] = over.backing;
      else if (over?.backing) implicitBackingOptions.set(implicit.spec, over.backing);
      const link = await child('backing', implicit.spec, CHILD_COW);
      // Opened from the header's name: the overlay's backing is not overridden while it is this node (auto_backing_file).
      link.implicitName = implicit.name;
      return link;
    } catch (err) {
      throw backingError(err);
    }
  };
  const node = await opener({ name, spec, readOnly, options, child, backing, find: (n) => graph.get(n), throttleGroups: graph.throttleGroups, clock: graph.clock, graph });
  node.settings = settings;
  node.forceShare = forceShare;
  // Set before a parent opens on it, so the parent's image reads it as read-only (NodeByteFile).
  node.inactive = graph.openInactive;
  const children = node.childList().map((c) => c.name);
  dropChildKeys(explicit, [...children, 'backing']);
  dropChildKeys(options, [...children, 'backing']);
  recordFlags(options, { ...settings, readOnly, autoReadOnly: boolOption(options, 'auto-read-only') });
  node.explicitOptions = explicit;
  node.options = options;
  for (const n of inline) n.inheritsFrom = node;
  try {
    // Refuses a name a child took meanwhile (the same node-name twice in one tree).
    graph.add(node, monitorOwned);
  } catch (err) {
    await node.close();
    throw err;
  }
  opened.push(node);
  return node;
}

/** bdrv_open_backing_file's error_prepend. */
export function backingError(err: unknown): BlockError {
  const msg = err instanceof Error ? err.message : String(err);
  return new BlockError(err instanceof BlockError ? err.code : 'IO', `Could not open backing file: ${msg}`, { cause: err });
}

/**
 * The options QEMU opens a backing file named in an image's header with
 * (bdrv_open_backing_file): a `json:{…}` name is the options themselves;
 * a plain name is relative to the image's directory, opened with the
 * header's format or else a probed one, over a file node.
 */
export async function implicitBacking(overlay: string, name: string, format: string | undefined): Promise<{ spec: BlockdevSpec; name: string }> {
  if (name.startsWith('json:')) return { spec: await jsonFilenameSpec(name, format), name };
  if (hasProtocolPrefix(name)) {
    if (!knownProtocol(name)) throw unopenableProtocol(name);
    // file:PATH, nbd:…, null-co://, blkdebug:…: opened as the protocol says, the format over it probed if not named.
    const { proto, probeTarget } = protocolOfFilename(name);
    const driver = format ?? (probeTarget !== undefined ? await probeFormat(probeTarget).catch(() => 'raw') : 'raw');
    if (!OPENERS[driver]) throw new BlockError('UNSUPPORTED', `Unknown driver '${driver}'`);
    // auto_backing_file becomes the opened image's own name: a host file's is its path without "file:".
    const opened = proto['driver'] === 'file' ? String(proto['filename']) : name;
    return { spec: driver === proto['driver'] ? (proto as unknown as BlockdevSpec) : { driver, file: proto }, name: opened };
  }
  const full = isAbsolute(name) ? name : resolve(dirname(overlay), name);
  const driver = format ?? (await probeFormat(full).catch(() => 'raw'));
  if (!OPENERS[driver] || driver === 'file') throw new BlockError('UNSUPPORTED', `Unknown driver '${driver}'`);
  return { spec: { driver, file: { driver: 'file', filename: full } }, name: full };
}
