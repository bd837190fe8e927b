import { BlockError } from './errors.js';
import type { EncryptionOptions } from './qcow2/crypto/open.js';
import type { CreateOptions } from './create.js';
import { HostFile, type LockingMode } from './file.js';
import { fileProtocolPath, hasProtocolPrefix } from './path-protocol.js';
import { PERM_ALL } from './perm.js';
import { probeFormat } from './probe.js';
import { checkQcow2File, type CheckOptions } from './qcow2/check.js';
import type { CheckResult } from './qcow2/check-types.js';
import { checkChainDepth, Qcow2Image } from './qcow2/image.js';
import { RawImage } from './raw.js';
import { LuksImage } from './luks/image.js';
import { backingLockSpec, checkForceShare, filePerms, type NodeLockSpec } from './tool-perms.js';
import type { BlockImage, ImageFormat } from './types.js';

export interface OpenOptions {
  /** Probed when absent, as QEMU does. */
  format?: ImageFormat;
  readOnly?: boolean;
  /** qcow2: open the backing chain (default true). Without it, unallocated clusters read as zeroes. */
  openBacking?: boolean;
  /** Position in a backing chain (internal: bounds chain depth and loops). */
  depth?: number;
  /** Lock every file of the chain as QEMU's tools do (tool-perms.ts); without it no lock is taken or checked. */
  locks?: OpenLocks;
  /** qcow2: the caller keeps the image's persistent bitmaps (see Qcow2OpenOptions.persistentBitmaps). */
  persistentBitmaps?: boolean;
  /**
   * Opens a backing file named by a protocol or `json:{…}` name, which
   * this layer cannot (a node graph does, one layer up); handed down the
   * chain. Without it such a backing file is refused.
   */
  openProtocolImage?: ProtocolOpener;
  /** qcow2: an encrypted image's format and password (encrypt.format, encrypt.key-secret's bytes); luks: its key-secret's bytes (`key`). */
  encryption?: EncryptionOptions;
}

/** Opens `name` (a protocol or json: name) read-only as the image at `depth` of a chain, locked as `locks` says. */
export type ProtocolOpener = (name: string, format: ImageFormat | undefined, depth: number, locks: OpenLocks | undefined) => Promise<BlockImage>;

/** How the files of a chain are locked: what the image's users take (its node's permissions), as tool-perms.ts works it out. */
export interface OpenLocks {
  /** The top node's cumulative permissions (topLockSpec(flags).node for a tool's BlockBackend). */
  node: NodeLockSpec['node'];
  noIo?: boolean;
  forceShare?: boolean;
  /** The file driver's locking option (default auto: where OFD locks work). */
  mode?: LockingMode;
}

export async function openImage(name: string, opts: OpenOptions = {}): Promise<BlockImage> {
  if (opts.locks) checkForceShare(opts.readOnly ?? false, opts.locks.forceShare);
  if (isProtocolName(name)) {
    if (!opts.openProtocolImage) throw new BlockError('UNSUPPORTED', `Could not open '${name}': protocols and json: filenames are not supported here`);
    return opts.openProtocolImage(name, opts.format, opts.depth ?? 0, opts.locks);
  }
  const path = fileProtocolPath(name);
  const format = opts.format ?? (await probeFormat(path));
  if (!isFormat(format)) throw new BlockError('INVALID_ARGUMENT', `Unknown driver '${String(format)}'`);
  if (format === 'qcow2') checkChainDepth(path, opts.depth ?? 0);
  const { file, spec } = await openLockedFile(path, format, opts.readOnly ?? false, opts.locks);
  try {
    if (format === 'raw') return await RawImage.fromFile(file);
    if (format === 'luks') return await LuksImage.openFile(file, { metadataOnly: opts.locks?.noIo === true, ...(opts.encryption?.key ? { key: opts.encryption.key } : {}) });
    return await Qcow2Image.openFile(file, {
      readOnly: opts.readOnly,
      openBacking: opts.openBacking ?? true,
      depth: opts.depth,
      persistentBitmaps: opts.persistentBitmaps,
      metadataOnly: opts.locks?.noIo === true,
      ...(opts.encryption ? { encryption: opts.encryption } : {}),
      // The data file as its own file child (bdrv_open_child of the header's name): locked as a file under a format is.
      openDataFile: async (name, readOnly) => (await openLockedFile(fileProtocolPath(name), 'raw', readOnly, opts.locks)).file,
      openBackingImage: (p, fmt, depth) => openImage(p, { format: fmt, readOnly: true, depth, locks: backingLocks(spec, opts.locks), openProtocolImage: opts.openProtocolImage }),
    });
  } catch (err) {
    await file.close();
    throw err;
  }
}

/** A name with a protocol other than `file:` (path_has_protocol), or a json: tree: not a host path. */
export function isProtocolName(name: string): boolean {
  return hasProtocolPrefix(name) && !name.startsWith('file:');
}

/**
 * qemu-img check's open of a qcow2 image (BDRV_O_CHECK): the image opened
 * for checking (read-write to repair), with its backing chain opened and
 * locked as any open of the image would, then checked.
 */
export async function checkImage(path: string, opts: Pick<CheckOptions, 'repair'> & Pick<OpenOptions, 'locks' | 'openProtocolImage'> = {}): Promise<CheckResult> {
  const readOnly = opts.repair === undefined;
  if (opts.locks) checkForceShare(readOnly, opts.locks.forceShare);
  const { file, spec } = await openLockedFile(fileProtocolPath(path), 'qcow2', readOnly, opts.locks);
  try {
    return await checkQcow2File(file, path, {
      repair: opts.repair,
      openBackingImage: (p, fmt, depth) => openImage(p, { format: fmt, readOnly: true, depth, locks: backingLocks(spec, opts.locks), openProtocolImage: opts.openProtocolImage }),
    });
  } finally {
    await file.close();
  }
}

/**
 * Opens the host file under an image and, with `locks`, takes the lock
 * bytes QEMU's file node would hold for it before anything is read: QEMU
 * locks a file when its format node attaches it, so a refusal comes before
 * a bad header or anything about the backing chain.
 */
async function openLockedFile(path: string, format: ImageFormat, readOnly: boolean, locks: OpenLocks | undefined) {
  if (!locks) return { file: await HostFile.open(path, { readOnly }), spec: undefined };
  const spec: NodeLockSpec = { node: locks.node, readOnly, noIo: locks.noIo ?? false, forceShare: locks.forceShare ?? false };
  const p = filePerms(format, spec);
  // Taking nothing and sharing all locks no byte and checks none: no need to find out whether locks work.
  const none = p.perm === 0 && p.shared === PERM_ALL;
  const file = await HostFile.open(path, { readOnly, locking: none ? undefined : (locks.mode ?? 'auto') });
  try {
    await file.lockPerms(p.perm, p.shared);
  } catch (err) {
    await file.close();
    throw err;
  }
  return { file, spec };
}

function backingLocks(spec: NodeLockSpec | undefined, locks: OpenLocks | undefined): OpenLocks | undefined {
  if (!spec || !locks) return undefined;
  const b = backingLockSpec(spec);
  return { node: b.node, noIo: b.noIo, forceShare: b.forceShare, mode: locks.mode };
}

export async function createImage(name: string, opts: CreateOptions): Promise<void> {
  const path = fileProtocolPath(name);
  switch (opts.format) {
    case 'raw':
      if (opts.size === undefined) throw new BlockError('INVALID_ARGUMENT', 'Image creation needs a size parameter');
      return RawImage.create(path, opts.size);
    case 'qcow2':
      return Qcow2Image.create(path, opts, (p, fmt, depth) => openImage(p, { format: fmt, readOnly: true, depth }));
    case 'luks':
      if (opts.size === undefined) throw new BlockError('INVALID_ARGUMENT', 'Image creation needs a size parameter');
      return LuksImage.create(path, opts.size, opts.encryption ?? { format: 'luks' }, opts.preallocation);
    default:
      throw new BlockError('INVALID_ARGUMENT', `Unknown file format '${String(opts.format)}'`);
  }
}

export const FORMATS: readonly ImageFormat[] = ['raw', 'qcow2', 'luks'];
export function isFormat(s: string): s is ImageFormat {
  return (FORMATS as readonly string[]).includes(s);
}
