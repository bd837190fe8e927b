/**
 * Network protocol drivers' options (qapi/block-core.json 7.2): curl
 * (http, https, ftp, ftps), iscsi, nfs, nbd, ssh, gluster, rbd. blockemu
 * opens nbd nodes (src/blockdev/drivers/nbd.ts); the others are declared
 * so their options are validated as QEMU validates them before we refuse
 * the driver.
 */
import { InetSocketAddress, InetSocketAddressBase, SocketAddress } from '../sockets.js';
import { array, bool, enumType, int, str, struct, uint32, union } from '../types.js';
import { RbdImageEncryptionFormat } from './common.js';

const curlBase = {
  url: str,
  '*readahead': int,
  '*timeout': int,
  '*username': str,
  '*password-secret': str,
  '*proxy-username': str,
  '*proxy-password-secret': str,
};
export const BlockdevOptionsCurlHttp = struct('BlockdevOptionsCurlHttp', { ...curlBase, '*cookie': str, '*cookie-secret': str });
export const BlockdevOptionsCurlHttps = struct('BlockdevOptionsCurlHttps', { ...curlBase, '*cookie': str, '*sslverify': bool, '*cookie-secret': str });
export const BlockdevOptionsCurlFtp = struct('BlockdevOptionsCurlFtp', curlBase);
export const BlockdevOptionsCurlFtps = struct('BlockdevOptionsCurlFtps', { ...curlBase, '*sslverify': bool });

export const IscsiTransport = enumType('IscsiTransport', ['tcp', 'iser']);
export const IscsiHeaderDigest = enumType('IscsiHeaderDigest', ['crc32c', 'none', 'crc32c-none', 'none-crc32c']);
export const BlockdevOptionsIscsi = struct('BlockdevOptionsIscsi', {
  transport: IscsiTransport,
  portal: str,
  target: str,
  '*lun': int,
  '*user': str,
  '*password-secret': str,
  '*initiator-name': str,
  '*header-digest': IscsiHeaderDigest,
  '*timeout': int,
});

export const NFSTransport = enumType('NFSTransport', ['inet']);
export const NFSServer = struct('NFSServer', { type: NFSTransport, host: str });
export const BlockdevOptionsNfs = struct('BlockdevOptionsNfs', {
  server: NFSServer,
  path: str,
  '*user': int,
  '*group': int,
  '*tcp-syn-count': int,
  '*readahead-size': int,
  '*page-cache-size': int,
  '*debug': int,
});

export const BlockdevOptionsNbd = struct('BlockdevOptionsNbd', {
  server: SocketAddress,
  '*export': str,
  '*tls-creds': str,
  '*tls-hostname': str,
  '*x-dirty-bitmap': str,
  '*reconnect-delay': uint32,
  '*open-timeout': uint32,
});

export const SshHostKeyCheckMode = enumType('SshHostKeyCheckMode', ['none', 'hash', 'known_hosts']);
export const SshHostKeyCheckHashType = enumType('SshHostKeyCheckHashType', ['md5', 'sha1', 'sha256']);
export const SshHostKeyHash = struct('SshHostKeyHash', { type: SshHostKeyCheckHashType, hash: str });
export const SshHostKeyCheck = union('SshHostKeyCheck', { mode: SshHostKeyCheckMode }, 'mode', { hash: SshHostKeyHash });
export const BlockdevOptionsSsh = struct('BlockdevOptionsSsh', { server: InetSocketAddress, path: str, '*user': str, '*host-key-check': SshHostKeyCheck });

export const BlockdevOptionsGluster = struct('BlockdevOptionsGluster', {
  volume: str,
  path: str,
  server: array(SocketAddress),
  '*debug': int,
  '*logfile': str,
});

export const RbdAuthMode = enumType('RbdAuthMode', ['cephx', 'none']);
const rbdLuksBase = { 'key-secret': str };
export const RbdEncryptionOptions = union('RbdEncryptionOptions', { format: RbdImageEncryptionFormat }, 'format', {
  luks: struct('RbdEncryptionOptionsLUKS', rbdLuksBase),
  luks2: struct('RbdEncryptionOptionsLUKS2', rbdLuksBase),
});
export const BlockdevOptionsRbd = struct('BlockdevOptionsRbd', {
  pool: str,
  '*namespace': str,
  image: str,
  '*conf': str,
  '*snapshot': str,
  '*encrypt': RbdEncryptionOptions,
  '*user': str,
  '*auth-client-required': array(RbdAuthMode),
  '*key-secret': str,
  '*server': array(InetSocketAddressBase),
});
