import { connect, type Socket } from 'node:net';
import { strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';

/** Where the server listens (QAPI's SocketAddress, the kinds a client can reach here). */
export type ServerAddress = { type: 'unix'; path: string } | { type: 'inet'; host: string; port: string; ipv4?: boolean; ipv6?: boolean };

/** getaddrinfo's failures as glibc's gai_strerror words them. */
const GAI: Record<string, string> = {
  ENOTFOUND: 'Name or service not known',
  EAI_AGAIN: 'Temporary failure in name resolution',
  EAI_FAIL: 'Non-recoverable failure in name resolution',
};

/**
 * A connected stream socket to the server, or QEMU's error for the
 * address (util/qemu-sockets.c: "Failed to connect to 'PATH': …",
 * "Failed to connect to 'HOST:PORT': …", "address resolution failed for
 * HOST:PORT: …"). Nagle is off, as qio_channel_set_delay(false): requests
 * are small and each one waits for its reply.
 */
export function connectServer(addr: ServerAddress): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const where = addr.type === 'unix' ? `'${addr.path}'` : `'${addr.host}:${addr.port}'`;
    let sock: Socket;
    if (addr.type === 'unix') {
      // sizeof(sun_path): unix_connect_saddr refuses longer paths before connecting.
      if (Buffer.byteLength(addr.path) > 108) {
        reject(new BlockError('IO', `UNIX socket path '${addr.path}' is too long`, { errno: 'EINVAL' }));
        return;
      }
      sock = connect({ path: addr.path });
    } else {
      const port = Number(addr.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        reject(new BlockError('IO', `address resolution failed for ${addr.host}:${addr.port}: Servname not supported for ai_socktype`, { errno: 'EINVAL' }));
        return;
      }
      const family = addr.ipv4 && !addr.ipv6 ? 4 : addr.ipv6 && !addr.ipv4 ? 6 : 0;
      sock = connect({ host: addr.host, port, family });
    }
    const onError = (err: NodeJS.ErrnoException) => {
      sock.destroy();
      const code = err.code ?? 'EIO';
      if (addr.type === 'inet' && GAI[code]) {
        reject(new BlockError('IO', `address resolution failed for ${addr.host}:${addr.port}: ${GAI[code]}`, { errno: 'EINVAL', cause: err }));
      } else {
        reject(new BlockError('IO', `Failed to connect to ${where}: ${strerror(code)}`, { errno: code, cause: err }));
      }
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      sock.setNoDelay(true);
      resolve(sock);
    });
  });
}
