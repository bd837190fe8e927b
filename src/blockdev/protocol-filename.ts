import { BlockError } from '../image/errors.js';
import { isNbdFilename, nbdFileSpec } from './nbd-filename.js';

/**
 * The protocol node a file name opens (bdrv_find_protocol, then the
 * driver's parse_filename): nbd:…, null-co://, blkdebug:CONFIG:IMAGE (whose
 * image is such a name in turn), file:PATH, else a host file; and the file
 * a format probe reads, if there is one.
 */
export function protocolOfFilename(file: string): { proto: Record<string, unknown>; probeTarget?: string } {
  if (isNbdFilename(file)) return { proto: { ...nbdFileSpec(file) } };
  if (file.startsWith('null-co://') || file.startsWith('null-aio://')) return { proto: { driver: file.slice(0, file.indexOf(':')) } };
  if (file.startsWith('blkdebug:')) {
    const rest = file.slice('blkdebug:'.length);
    const colon = rest.indexOf(':');
    if (colon < 0) throw new BlockError('INVALID_ARGUMENT', 'blkdebug requires both config file and image path');
    const config = rest.slice(0, colon);
    const image = protocolOfFilename(rest.slice(colon + 1));
    return { proto: { driver: 'blkdebug', ...(config !== '' ? { config } : {}), image: image.proto }, ...(image.probeTarget !== undefined ? { probeTarget: image.probeTarget } : {}) };
  }
  if (file.startsWith('blkverify:')) {
    // blkverify_parse_filename: blkverify:RAW:TEST, the raw copy a protocol, the image under test probed (test.driver left to the caller).
    const rest = file.slice('blkverify:'.length);
    const colon = rest.indexOf(':');
    if (colon < 0) throw new BlockError('INVALID_ARGUMENT', 'blkverify requires raw copy and original image path');
    return { proto: { driver: 'blkverify', raw: protocolOfFilename(rest.slice(0, colon)).proto, test: { file: protocolOfFilename(rest.slice(colon + 1)).proto } } };
  }
  // file-posix's parse_filename takes the protocol prefix off.
  const path = fileProtocolPath(file);
  // A plain device name is host_device's (hdev_probe_device; blockemu goes by the /dev/ prefix rather than a stat).
  if (path === file && file.startsWith('/dev/')) return { proto: { driver: 'host_device', filename: path }, probeTarget: path };
  return { proto: { driver: 'file', filename: path }, probeTarget: path };
}

export { hasProtocolPrefix } from '../image/path-protocol.js';
import { fileProtocolPath } from '../image/path-protocol.js';

/** Whether protocolOfFilename opens the name as a protocol it knows, rather than as a host path (which a name with another prefix is not). */
export function knownProtocol(name: string): boolean {
  return protocolOfFilename(name).proto['driver'] !== 'file' || name.startsWith('file:');
}

/** Protocol prefixes QEMU 7.2 (Debian's build) finds a driver for (bdrv_find_protocol). */
const QEMU_PROTOCOLS = new Set(['file', 'host_device', 'host_cdrom', 'nbd', 'nbd+tcp', 'nbd+unix', 'null-co', 'null-aio', 'blkdebug', 'blkverify', 'http', 'https', 'ftp', 'ftps', 'ssh', 'nfs', 'iscsi', 'iser', 'rbd', 'gluster', 'vvfat', 'nvme', 'json']);

/** The error for a protocol name blockemu cannot open: QEMU's own for a protocol QEMU does not know either. */
export function unopenableProtocol(name: string): BlockError {
  const proto = name.slice(0, name.indexOf(':'));
  if (!QEMU_PROTOCOLS.has(proto)) return new BlockError('INVALID_ARGUMENT', `Unknown protocol '${proto}'`);
  return new BlockError('UNSUPPORTED', `Could not open '${name}': protocol file names are not supported by blockemu`);
}
