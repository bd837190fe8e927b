import { BlockBackend } from '../../blockdev/block-backend.js';
import { type EncryptionOptions, encryptionFromOptions } from '../../image/qcow2/crypto/open.js';
import { imgBlockGraph, imgSecretBytes, objectsReady } from './objects.js';
import { checkQcow2RuntimeOptions } from '../../blockdev/drivers/qcow2.js';
import { QCOW2_OPTIONS } from '../../blockdev/drivers/qcow2-options.js';
import { flattenQdict, type Options } from '../../blockdev/options.js';
import { FileNode } from '../../blockdev/drivers/file.js';
import { nodeNames } from '../../blockdev/filename.js';
import { BlockGraph } from '../../blockdev/graph.js';
import type { BlockNode } from '../../blockdev/node.js';
import { NodeByteFile } from '../../blockdev/node-file.js';
import { NodeImage } from '../../blockdev/node-image.js';
import { backingError, type BlockdevSpec, openBlockdev } from '../../blockdev/open.js';
import { hasProtocolPrefix, knownProtocol } from '../../blockdev/protocol-filename.js';
import { BlockError } from '../../image/errors.js';
import { pathCombine } from './backing-name.js';
import { isFormat, openImage, type OpenLocks, type ProtocolOpener } from '../../image/open.js';
import { PERM_ALL } from '../../image/perm.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { RawImage } from '../../image/raw.js';
import { type LuksOpenOptions, LuksImage } from '../../image/luks/image.js';
import { backendPerms, backingLockSpec, filePerms, type NodeLockSpec, topLockSpec, type ToolOpenFlags } from '../../image/tool-perms.js';
import { checkQcow2File } from '../../image/qcow2/check.js';
import type { CheckResult, RepairMode } from '../../image/qcow2/check-types.js';
import type { BlockImage, Extent, ImageFormat, ImageInfo } from '../../image/types.js';
import { filenameOptionsSpec } from '../../qmp/commands/drive.js';
import { toQmpJson } from '../../qmp/json-out.js';
import { qdictOrder } from '../../qmp/qdict-order.js';

/**
 * `blockemu img` on a name the image layer cannot open by itself: a
 * protocol other than a host file (`blkdebug:conf:file`, `nbd:…`,
 * `null-co://`) or a `json:{…}` tree. As in qemu-img, the name becomes a
 * node graph (bdrv_open's filename parsing and probing, shared with the
 * daemon's -drive and qemu-io); its protocol part is opened as nodes, and
 * the format on top is the image layer's own qcow2 or raw image reading
 * and writing through them, so every subcommand works on it unchanged and
 * what the image announces (l1_update, cluster_free, …) reaches blkdebug.
 * Backing files named by the image are opened by path, as for any image.
 */

/** Whether `name` must be opened through the graph. */
export function needsGraph(name: string): boolean {
  if (name.startsWith('json:')) return true;
  if (!hasProtocolPrefix(name)) return false;
  try {
    return knownProtocol(name) && !name.startsWith('file:');
  } catch {
    // A malformed protocol name (blkdebug without its colon): the graph says what is wrong with it.
    return true;
  }
}

export interface GraphOpenOptions {
  format?: string;
  readOnly: boolean;
  openBacking: boolean;
  persistentBitmaps?: boolean;
  flags: ToolOpenFlags;
  /** qcow2: the backing image, already open (commit reopens a chain bottom up), instead of opening the one the header names. */
  backingImage?: BlockImage;
  /** --image-opts keys (a QemuOpts string's), read as bdrv_open reads its options. */
  options?: ReadonlyMap<string, string>;
  /** A backing file's open: what the image above asks of it (instead of a BlockBackend's permissions from `flags`), and where it sits in the chain. */
  asBacking?: { locks: OpenLocks | undefined; depth: number };
}

/** qcow2's runtime options: checked as qcow2_update_options checks them; blockemu's caches size themselves. */
const QCOW2_RUNTIME_KEYS = new Set(QCOW2_OPTIONS.map((k) => k.split('.')[0]!));

/** Format-level options the image layer takes as they are (the rest would be ignored, so they are refused). */
const FORMAT_KEYS = new Set(['driver', 'file', 'node-name', 'read-only', 'force-share', 'auto-read-only', 'discard', 'detect-zeroes', 'cache']);

/** The protocol part of a name opened as nodes, the format to put over it, and the name QEMU shows. */
interface OpenedProtocol {
  format: ImageFormat;
  file: GraphByteFile;
  shown: string;
  /** qcow2's runtime options given (flat): checked against the image once open. */
  runtime: Options;
  backingLocks: OpenLocks;
  /** qcow2's `data-file` given as options: opened as nodes of the same graph. */
  dataFile?: GraphByteFile;
  /** qcow2's `backing` given as options (backing.driver=…, backing.encrypt.key-secret=…): opened as an image of its own. */
  backing?: BlockdevSpec;
}

async function openProtocol(name: string | undefined, o: GraphOpenOptions): Promise<OpenedProtocol | { root: BlockImage }> {
  const flat = new Map(o.options ?? []);
  if (o.format !== undefined && !flat.has('driver')) flat.set('driver', o.format);
  if (o.flags.forceShare) flat.set('force-share', 'on');
  if (!flat.has('read-only')) flat.set('read-only', o.readOnly ? 'on' : 'off');
  // file=NAME names a node to use as the file: a tool's graph has none to find.
  const ref = flat.get('file');
  if (ref !== undefined && ![...flat.keys()].some((k) => k.startsWith('file.'))) throw new BlockError('NOT_FOUND', `Cannot find device='${ref}' nor node-name='${ref}'`);
  // qemu-img's own commands print the probing warning where they would (a raw image opened for writing).
  const spec = await filenameOptionsSpec(name, flat, () => undefined);
  // An option string may say read-only=on; a tool that writes then fails as bdrv_open fails it.
  if (spec['read-only'] === true && !o.readOnly) throw new BlockError('READ_ONLY', 'Block node is read-only', { errno: 'EPERM' });
  const format = spec.driver;
  if (!isFormat(format)) return { root: await openRoot(spec, o) };
  const runtime: Options = {};
  for (const [key, value] of Object.entries(spec)) {
    if (format === 'qcow2' && (QCOW2_RUNTIME_KEYS.has(key) || key.startsWith('encrypt.'))) flattenQdict({ [key]: value }, '', runtime);
    else if (format === 'luks' && key === 'key-secret') runtime[key] = value;
    else if (format === 'qcow2' && (key === 'data-file' || key === 'backing')) continue;
    else if (!FORMAT_KEYS.has(key)) throw new BlockError('UNSUPPORTED', `blockemu img does not apply the ${format} option '${key}'`);
  }
  const fileSpec = spec['file'];
  if (typeof fileSpec !== 'object' || fileSpec === null) throw new BlockError('INVALID_ARGUMENT', `A block device must be specified for "file"`);
  const graph = new BlockGraph();
  const top = o.asBacking ? backingTopSpec(o.asBacking.locks) : topLockSpec({ ...o.flags, readOnly: o.readOnly });
  // The format would be the protocol's parent: its BlockBackend asks what the format asks of its file.
  const blk = new BlockBackend(filePerms(format, top));
  try {
    const proto: BlockNode = await openBlockdev(graph, { ...(fileSpec as BlockdevSpec), 'read-only': o.readOnly, ...(o.flags.forceShare ? { 'force-share': true } : {}) }, false);
    await blk.insert(proto);
    const protoName = nodeNames(proto, toQmpJson).get(proto)!.filename;
    const shown = formatNodeName(format, protoName, runtime);
    const hostPath = hostPathOf(proto);
    const dataBlk = new BlockBackend(filePerms('raw', top));
    const dataFile = await openDataFileNode(graph, spec['data-file'], dataBlk, o);
    const file = new GraphByteFile(proto, hostPath ?? shown, hostPath, async () => {
      await dataBlk.remove();
      await blk.remove();
      await graph.closeAll();
    });
    const backing = typeof spec['backing'] === 'object' && spec['backing'] !== null ? (spec['backing'] as BlockdevSpec) : undefined;
    return { format, file, shown, runtime, dataFile, backing, backingLocks: { node: backingLockSpec(top).node, noIo: top.noIo, forceShare: top.forceShare } };
  } catch (err) {
    await blk.remove().catch(() => undefined);
    await graph.closeAll().catch(() => undefined);
    throw err;
  }
}

/**
 * qcow2's `data-file` option (`data-file.filename=…`, or a tree with
 * blkdebug in it) as a node of the tool's graph, its permissions those of
 * a format's file; closed with the graph. A node name finds nothing here.
 */
async function openDataFileNode(graph: BlockGraph, ref: unknown, blk: BlockBackend, o: GraphOpenOptions): Promise<GraphByteFile | undefined> {
  if (ref === undefined) return undefined;
  if (typeof ref === 'string') throw new BlockError('NOT_FOUND', `Cannot find device='${ref}' nor node-name='${ref}'`);
  const node = await openBlockdev(graph, { ...(ref as BlockdevSpec), 'read-only': o.readOnly }, false);
  await blk.insert(node);
  const name = nodeNames(node, toQmpJson).get(node)!.filename;
  return new GraphByteFile(node, name, hostPathOf(node), () => Promise.resolve());
}

/**
 * bdrv_refresh_filename for the format over the file named `protoName`:
 * the file's name when that is a plain one and no strong option of the
 * format's was given (a key-secret is one), else a json: name of the
 * format's driver and strong options with the file's options inside.
 */
function formatNodeName(format: string, protoName: string, runtime: Options): string {
  const strong = Object.entries(runtime).filter(([k]) => (format === 'luks' && k === 'key-secret') || (format === 'qcow2' && k === 'encrypt.key-secret'));
  if (strong.length === 0 && !protoName.startsWith('json:')) return protoName;
  // The file's options as its own name spells them (parsing and writing them again could reorder colliding keys).
  const file = protoName.startsWith('json:') ? protoName.slice('json:'.length) : toQmpJson({ driver: 'file', filename: protoName });
  const values = new Map<string, string>([['driver', toQmpJson(format)], ['file', file], ...strong.map(([k, v]): [string, string] => [k, toQmpJson(v)])]);
  return `json:{${qdictOrder([...values.keys()]).map((k) => `${toQmpJson(k)}: ${values.get(k)!}`).join(', ')}}`;
}

/** encrypt.format and encrypt.key-secret as given, the secret one of --object's; the tools open legacy AES images. */
function encryptionOptions(runtime: Options): EncryptionOptions {
  return encryptionFromOptions(runtime, imgSecretBytes);
}

/**
 * A format image over nodes: the image layer's qcow2 or raw image, whose
 * close also closes the graph below it. A graph whose top is not a format
 * (blkdebug above qcow2, as iotests 204 and 251 inject errors into block
 * status) is read through its top node instead, read-only.
 */
export async function openThroughGraph(name: string | undefined, o: GraphOpenOptions): Promise<BlockImage> {
  // qemu-img made its --object objects before anything is opened: one that failed is the command's error.
  await objectsReady();
  const opened = await openProtocol(name, o);
  if ('root' in opened) return opened.root;
  const { format, file, shown, backingLocks } = opened;
  // The image owns the file from here: a failed open closes it, and with it the graph.
  const luksSecret = opened.runtime['key-secret'];
  // Backing options open that image first (read-only, locked as a backing file), handed to the overlay, which closes it.
  let backingImage = o.backingImage;
  if (!backingImage && opened.backing && o.openBacking) {
    try {
      backingImage = await openProtocolBacking(`json:${JSON.stringify(opened.backing)}`, undefined, (o.asBacking?.depth ?? 0) + 1, backingLocks);
    } catch (err) {
      await file.close();
      throw backingError(err);
    }
  }
  let image: BlockImage;
  try {
    image =
      format === 'raw'
        ? await RawImage.fromFile(file)
        : format === 'luks'
          ? await openLuks(file, { metadataOnly: o.flags.noIo === true, ...(typeof luksSecret === 'string' ? { key: () => imgSecretBytes(luksSecret) } : {}) })
          : await Qcow2Image.openFile(file, {
              readOnly: o.readOnly,
              openBacking: o.openBacking,
              persistentBitmaps: o.persistentBitmaps,
              depth: o.asBacking?.depth,
              ...(backingImage ? { backingImage } : {}),
              ...(opened.dataFile ? { givenDataFile: () => Promise.resolve(opened.dataFile!) } : {}),
              openBackingImage: (p, fmt, depth) => openImage(p, { format: fmt, readOnly: true, depth, locks: backingLocks, openProtocolImage: openProtocolBacking }),
              encryption: encryptionOptions(opened.runtime),
              ...(o.flags.noIo ? { metadataOnly: true } : {}),
            });
  } catch (err) {
    // A backing image opened here from options is this open's to close (closing twice is harmless).
    if (backingImage !== o.backingImage) await backingImage?.close().catch(() => undefined);
    throw err;
  }
  if (image instanceof Qcow2Image && Object.keys(opened.runtime).length > 0) {
    try {
      checkQcow2RuntimeOptions(image, { ...opened.runtime });
    } catch (err) {
      await image.close();
      throw err;
    }
  }
  shownNames.set(image, shown);
  dirBases.set(image, file.hostPath);
  return image;
}

/** A luks image over the graph's file; a failed open closes the file (and with it the graph), as the image would own it. */
async function openLuks(file: GraphByteFile, opts: LuksOpenOptions): Promise<LuksImage> {
  try {
    return await LuksImage.openFile(file, opts);
  } catch (err) {
    await file.close();
    throw err;
  }
}

/**
 * A backing file named by a protocol or json: name (`json:{'driver':
 * 'qcow2', 'file': {'driver': 'blkdebug', …}}`, as iotest 020 makes one),
 * opened as nodes as bdrv_open_backing_file opens it: read-only, locked as
 * the image above asks.
 */
export const openProtocolBacking: ProtocolOpener = async (name, format, depth, locks) => {
  const image = await openThroughGraph(name, { format, readOnly: true, openBacking: true, flags: { readOnly: true, noIo: locks?.noIo, forceShare: locks?.forceShare }, asBacking: { locks, depth } });
  openedNames.set(image, name);
  return image;
};

const openedNames = new WeakMap<BlockImage, string>();

/** The protocol or json: name a backing file was opened by (commit opens it so again, writable). */
export function graphOpenedName(img: BlockImage): string | undefined {
  return openedNames.get(img);
}

/** The lock spec of a backing file opened through the graph; without locks (a tool that takes none) it takes nothing and shares all. */
function backingTopSpec(locks: OpenLocks | undefined): NodeLockSpec {
  if (!locks) return { node: { perm: 0, shared: PERM_ALL }, readOnly: true, noIo: true, forceShare: true };
  return { node: locks.node, readOnly: true, noIo: locks.noIo ?? false, forceShare: locks.forceShare ?? false };
}

/** The whole graph, its top node read through a BlockBackend as QEMU's tools read it. */
async function openRoot(spec: BlockdevSpec, o: GraphOpenOptions): Promise<BlockImage> {
  if (!o.readOnly) throw new BlockError('UNSUPPORTED', `blockemu img writes an image only through a qcow2, luks or raw node at the top; a '${spec.driver}' node there is read-only here`);
  const graph = await imgBlockGraph();
  const blk = new BlockBackend(backendPerms({ ...o.flags, readOnly: true }));
  try {
    const root = await openBlockdev(graph, spec, false);
    await blk.insert(root);
    const image = new GraphRootImage(await NodeImage.of(root), async () => {
      await blk.remove();
      await graph.closeAll();
    });
    shownNames.set(image, nodeNames(root, toQmpJson).get(root)!.filename);
    return image;
  } catch (err) {
    await blk.remove().catch(() => undefined);
    await graph.closeAll().catch(() => undefined);
    throw err;
  }
}

/** qemu-img check of a name opened as nodes: the qcow2 check over them ('raw' when the format has no checks). */
export async function checkThroughGraph(
  name: string | undefined,
  o: { format?: string; repair?: RepairMode; forceShare?: boolean; options?: ReadonlyMap<string, string> },
): Promise<CheckResult | 'raw' | 'luks'> {
  const readOnly = o.repair === undefined;
  const share = o.options?.get('force-share');
  const flags = { readOnly, forceShare: o.forceShare === true || share === 'on' };
  const opened = await openProtocol(name, { format: o.format, readOnly, openBacking: true, flags, ...(o.options ? { options: o.options } : {}) });
  if ('root' in opened) {
    await opened.root.close();
    throw new BlockError('UNSUPPORTED', 'blockemu img checks a qcow2 image at the top of the graph only');
  }
  const { format, file, shown, backingLocks } = opened;
  try {
    if (format === 'raw') return 'raw';
    if (format === 'luks') {
      // Opened (and unlocked) before qemu-img finds the format has no checks.
      const secret = opened.runtime['key-secret'];
      await LuksImage.openFile(file, typeof secret === 'string' ? { key: () => imgSecretBytes(secret) } : {});
      return 'luks';
    }
    return await checkQcow2File(file, shown, {
      repair: o.repair,
      openBackingImage: (p, fmt, depth) => openImage(p, { format: fmt, readOnly: true, depth, locks: backingLocks, openProtocolImage: openProtocolBacking }),
    });
  } finally {
    await file.close();
  }
}

/** The host file at the bottom of a protocol stack (blkdebug's image, …): relative backing names are resolved against it. */
function hostPathOf(node: BlockNode): string | undefined {
  for (let n: BlockNode | undefined = node; n; ) {
    if (n instanceof FileNode) return n.filename;
    const children = n.childList();
    n = children.length === 1 ? children[0]!.node : undefined;
  }
  return undefined;
}

const shownNames = new WeakMap<BlockImage, string>();
/** The host path below a format opened through the graph, whose directory relative backing names are in (undefined: none, as under NBD). */
const dirBases = new WeakMap<BlockImage, string | undefined>();

/**
 * bdrv_get_full_backing_filename: the name a relative backing name is
 * opened by, from the directory of the image's own name as typed, or of
 * the host file below a graph (bdrv_dirname); undefined when the graph
 * has no directory to give (qemu-img: "cannot determine actual path").
 */
export function actualBackingName(img: BlockImage, typedName: string, backing: string): string | undefined {
  if (hasProtocolPrefix(backing) || backing.startsWith('/')) return backing;
  const base = dirBases.has(img) ? dirBases.get(img) : typedName;
  return base === undefined ? undefined : pathCombine(base, backing);
}

/** The name QEMU shows for an image opened through the graph (bdrv_refresh_filename: `json:{…}` of a plain file is its path). */
export function graphImageName(img: BlockImage): string | undefined {
  return shownNames.get(img);
}

/** A protocol node's bytes owned by the image above it: closing the image closes the graph. */
class GraphByteFile extends NodeByteFile {
  constructor(
    node: BlockNode,
    path: string,
    readonly hostPath: string | undefined,
    private readonly closeGraph: () => Promise<void>,
  ) {
    super(node, path);
  }

  override async close(): Promise<void> {
    await this.closeGraph();
  }

  /** The protocol node's own block status (raw_co_block_status passes it down to the file). */
  blockStatus(offset: number, length: number): Promise<Extent> {
    return this.node.blockStatus(offset, length);
  }

  /** -1 where the node cannot tell (bdrv_get_allocated_file_size's -ENOTSUP: blkdebug, nbd): "disk size: unavailable". */
  override async allocatedBytes(): Promise<number> {
    return (await this.node.imageInfo()).actualSize ?? -1;
  }
}

/** The top node of a graph as a read-only image (NodeImage's view), owning the graph: closing it closes every node. */
class GraphRootImage implements BlockImage {
  readonly readOnly = true;

  constructor(
    private readonly view: NodeImage,
    private readonly closeGraph: () => Promise<void>,
  ) {}

  get format(): ImageFormat {
    return this.view.format;
  }
  get filename(): string {
    return this.view.filename;
  }
  size(): number {
    return this.view.size();
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.view.read(offset, length);
  }
  readInto(out: Uint8Array, offset: number): Promise<void> {
    return this.view.readInto(out, offset);
  }
  write(): Promise<void> {
    return this.view.write();
  }
  writeZeroes(): Promise<void> {
    return this.view.writeZeroes();
  }
  discard(): Promise<void> {
    return this.view.discard();
  }
  resize(): Promise<void> {
    return this.view.resize();
  }
  flush(): Promise<void> {
    return this.view.flush();
  }
  blockStatus(offset: number, length: number): Promise<Extent> {
    return this.view.blockStatus(offset, length);
  }
  actualSize(): Promise<number> {
    return this.view.actualSize();
  }
  info(): ImageInfo {
    return this.view.info();
  }
  backing(): BlockImage | undefined {
    return undefined;
  }
  private closed: Promise<void> | undefined;
  close(): Promise<void> {
    this.closed ??= this.closeGraph();
    return this.closed;
  }
}
