/**
 * Image files that commands create or open themselves (drive-backup's
 * and drive-mirror's target, blockdev-snapshot-sync's overlay). QEMU
 * looks a format up by name (bdrv_find_format) and words a name no
 * driver has by the path: creating (bdrv_img_create) says "Unknown file
 * format", opening (bdrv_fill_options) says "Unknown driver". A format
 * QEMU has and blockemu lacks is blockemu's refusal, not an unknown name.
 */
import { access } from 'node:fs/promises';
import { createOnNbdExport, isNbdFilename, nbdFileSpec, probeNbdFormat } from '../../blockdev/nbd-filename.js';
import type { BlockNode } from '../../blockdev/node.js';
import { protocolOfFilename } from '../../blockdev/protocol-filename.js';
import { strerror } from '../../image/errno.js';
import { formattingLine } from '../../image/create-options.js';
import { createImage } from '../../image/open.js';
import { probeFormat } from '../../image/probe.js';
import type { ImageFormat } from '../../image/types.js';
import { QmpError } from '../error.js';
import { BlockdevDriver } from '../schema/block-core/common.js';
import { namesOf } from './block-info.js';

const fail = (desc: string) => new QmpError('GenericError', desc);

/** Whether QEMU 7.2 has a driver of this name (the BlockdevDriver enum lists them all). */
export function isQemuDriver(name: string): boolean {
  return (BlockdevDriver.values as readonly string[]).includes(name);
}

/** bdrv_fill_options: a driver name no driver has. Known names go on to the node opener. */
export function checkOpenFormat(format: string): void {
  if (!isQemuDriver(format)) throw fail(`Unknown driver '${format}'`);
}

/** The format of a new image made from a node, and a backing file's format: the node's driver (drv->format_name, `file` for a bare file). */
export function formatName(n: BlockNode): string {
  return n.driver;
}

/** QEMU 7.2's drivers that have a create function (bdrv_co_create_opts); any other refuses to create an image at all. */
const QEMU_CREATES = new Set(['file', 'gluster', 'host_cdrom', 'host_device', 'iscsi', 'iser', 'luks', 'nbd', 'nfs', 'nvme', 'parallels', 'qcow', 'qcow2', 'qed', 'raw', 'rbd', 'ssh', 'vdi', 'vhdx', 'vmdk', 'vpc']);

/** Formats blockemu creates, and whether their images can name a backing file (a protocol's or raw's cannot). */
const CREATABLE: Record<string, { backing: boolean }> = { qcow2: { backing: true }, raw: { backing: false }, file: { backing: false } };

/**
 * bdrv_img_create: its checks and words in its order (the format, then
 * whether it takes a backing file), then a new image of `size` at `path`,
 * naming `base` as its backing file the way QEMU names it (a json: name
 * when its options make it more than its file). `file` writes the bare
 * host file, as raw does. Returns the path when this call created the
 * file — only such a file is the caller's to remove again if the command
 * fails. Its "Formatting …" line goes to `printf` (QEMU's stdout) once the
 * checks have passed, as bdrv_img_create prints it before creating.
 */
export async function createTargetImage(path: string, format: string, size: number, base?: BlockNode, printf?: (text: string) => void): Promise<string | undefined> {
  if (!isQemuDriver(format)) throw fail(`Unknown file format '${format}'`);
  // bdrv_find_protocol: an nbd: or nbd+unix:// name is an NBD export, where raw data (or the nbd driver itself) is "created" by opening it.
  if (isNbdFilename(path)) {
    if (format !== 'raw' && format !== 'nbd') throw fail(`Creating '${format}' images on an NBD export is not supported by blockemu (supported: raw, nbd)`);
    if (base) throw fail(`Backing file not supported for file format '${format}'`);
    printf?.(`${formattingLine(path, 'raw', new Map([['size', String(size)]]))}\n`);
    await createOnNbdExport(path, size);
    return undefined;
  }
  const kind = CREATABLE[format];
  if (!kind && !QEMU_CREATES.has(format)) throw fail(`Format driver '${format}' does not support image creation`);
  if (!kind) throw fail(`Creating '${format}' images is not supported by blockemu (supported: ${Object.keys(CREATABLE).join(', ')})`);
  if (base && !kind.backing) throw fail(`Backing file not supported for file format '${format}'`);
  const backing = base ? { backingFile: namesOf(base).get(base)!.filename, backingFormat: formatName(base) } : undefined;
  const texts = new Map([['size', String(size)]]);
  if (backing) texts.set('backing_file', backing.backingFile).set('backing_fmt', backing.backingFormat);
  printf?.(`${formattingLine(path, format as ImageFormat | 'file', texts)}\n`);
  const existed = await access(path).then(
    () => true,
    () => false,
  );
  try {
    if (format === 'qcow2') {
      await createImage(path, { format, size, ...backing });
    } else {
      await createImage(path, { format: 'raw', size });
    }
  } catch (err) {
    // bdrv_img_create's words: the file could not be created, with the system's reason.
    const errno = (err as { errno?: string }).errno;
    if (typeof errno === 'string') throw fail(`Could not create '${path}': ${strerror(errno)}`);
    throw err;
  }
  return existed ? undefined : path;
}

/**
 * Where a node of `format` finds its image: a bare file is a file node
 * itself, any other format opens one; a name of QEMU's nbd protocols
 * (`nbd:unix:PATH:exportname=E`, `nbd+unix:///E?socket=PATH`, …, as
 * Proxmox gives drive-mirror) is an nbd node instead (bdrv_find_protocol).
 */
export function imageFileOptions(format: string, path: string): Record<string, unknown> {
  if (format === 'file') return { filename: path };
  // The nbd driver given as the format takes the name itself (nbd_parse_filename refuses what is not nbd:…).
  if (format === 'nbd') return { ...nbdFileSpec(path) };
  // Other protocol names (blkdebug:CONF:FILE, null-co://, file:PATH) open as the protocol says (iotest 229).
  const { proto } = protocolOfFilename(path);
  if (proto['driver'] === format) {
    const { driver: _d, ...rest } = proto;
    return rest;
  }
  return { file: proto };
}

/**
 * A command's own image file (drive-backup's and drive-mirror's target,
 * blockdev-snapshot-sync's overlay): created as bdrv_img_create does
 * unless mode=existing, where only a format given is checked; then the
 * driver that opens it (probed from the file when none was given).
 * `createdFile` is the file this call created, the caller's to remove if
 * the command fails later.
 */
export async function prepareImageFile(
  path: string,
  mode: 'existing' | 'absolute-paths',
  format: string | undefined,
  size: number,
  base?: BlockNode,
  printf?: (text: string) => void,
): Promise<{ createdFile: string | undefined; driver: string }> {
  if (mode !== 'existing') {
    // A new image always has a format: the command's own, or the source's.
    return { createdFile: await createTargetImage(path, format!, size, base, printf), driver: format! };
  }
  if (format !== undefined) {
    checkOpenFormat(format);
    return { createdFile: undefined, driver: format };
  }
  if (isNbdFilename(path)) return { createdFile: undefined, driver: await probeNbdFormat(path) };
  const { probeTarget } = protocolOfFilename(path);
  return { createdFile: undefined, driver: probeTarget !== undefined ? await probeFormat(probeTarget) : 'raw' };
}
