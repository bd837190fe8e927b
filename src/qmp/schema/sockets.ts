/**
 * qapi/sockets.json (7.2): the addresses of the network block drivers'
 * options. Members under 'if' are those of a Linux build with MPTCP, as
 * the qemu-storage-daemon we compare against is.
 */
import { StringStruct } from './common.js';
import { bool, enumType, str, struct, uint16, union } from './types.js';

export const InetSocketAddressBase = struct('InetSocketAddressBase', { host: str, port: str });
export const InetSocketAddress = struct('InetSocketAddress', {
  host: str,
  port: str,
  '*numeric': bool,
  '*to': uint16,
  '*ipv4': bool,
  '*ipv6': bool,
  '*keep-alive': bool,
  '*mptcp': bool,
});
export const UnixSocketAddress = struct('UnixSocketAddress', { path: str, '*abstract': bool, '*tight': bool });
export const VsockSocketAddress = struct('VsockSocketAddress', { cid: str, port: str });
export const SocketAddressType = enumType('SocketAddressType', ['inet', 'unix', 'vsock', 'fd']);
export const SocketAddress = union('SocketAddress', { type: SocketAddressType }, 'type', {
  inet: InetSocketAddress,
  unix: UnixSocketAddress,
  vsock: VsockSocketAddress,
  fd: StringStruct,
});

/** The wrapped ("simple union") form nbd-server-start still takes. */
export const SocketAddressLegacy = union('SocketAddressLegacy', { type: SocketAddressType }, 'type', {
  inet: struct('InetSocketAddressWrapper', { data: InetSocketAddress }),
  unix: struct('UnixSocketAddressWrapper', { data: UnixSocketAddress }),
  vsock: struct('VsockSocketAddressWrapper', { data: VsockSocketAddress }),
  fd: struct('StringWrapper', { data: StringStruct }),
});
