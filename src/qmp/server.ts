import { chmod, lstat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { BlockError } from '../image/errors.js';
import { QmpSession, type SessionOptions } from './session.js';

export interface ServerOptions extends SessionOptions {
  /** Mode of the socket file (QEMU leaves it to the umask; we default to owner-only). */
  mode?: number;
}

/** Whether something accepts connections on a Unix socket path. */
function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A QMP monitor on a Unix socket. Unlike QEMU, which serves one client per
 * monitor socket at a time, it serves any number at once (a superset no QEMU
 * client can tell apart). A stale socket file left by a dead daemon is
 * replaced; a live one is an error.
 */
export class QmpServer {
  private readonly sessions = new Set<QmpSession>();
  /** Connections accepted so far: numbers the clients in the logs. */
  private connections = 0;
  private closing: Promise<void> | undefined;

  private constructor(
    readonly path: string,
    private readonly server: Server,
  ) {}

  static async listen(path: string, opts: ServerOptions): Promise<QmpServer> {
    const existing = await lstat(path).catch(() => undefined);
    if (existing) {
      if (!existing.isSocket()) throw new BlockError('INVALID_ARGUMENT', `Failed to bind socket to ${path}: Address already in use (not a socket)`);
      if (await isLive(path)) throw new BlockError('INVALID_ARGUMENT', `Failed to bind socket to ${path}: another process is serving it`);
      await unlink(path);
    }
    const server = createServer();
    const qmp = new QmpServer(path, server);
    server.on('connection', (socket) => {
      const session = new QmpSession(socket, opts, (s) => qmp.sessions.delete(s), `${path}#${++qmp.connections}`);
      qmp.sessions.add(session);
      session.start();
    });
    // The socket is born with its final mode (no window in which others could connect): umask while binding.
    const mode = opts.mode ?? 0o600;
    const oldMask = process.umask(0o777 & ~mode);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err: NodeJS.ErrnoException) =>
          reject(new BlockError('INVALID_ARGUMENT', `Failed to bind socket to ${path}: ${err.message}`, { errno: err.code, cause: err })),
        );
        server.listen(path, () => resolve());
      });
    } finally {
      process.umask(oldMask);
    }
    await chmod(path, mode);
    return qmp;
  }

  /** Sends an event to every negotiated client, stamped as QEMU stamps them. */
  // Event timestamps stay wall-clock even under --clock virtual: clients parse them as real
  // time (as QEMU's are), and the job clock only decides how long jobs wait.
  broadcast(name: string, data: unknown, now = Date.now() * 1000): void {
    const message: Record<string, unknown> = {
      event: name,
      ...(data === undefined ? {} : { data }),
      timestamp: { seconds: Math.floor(now / 1e6), microseconds: now % 1e6 },
    };
    for (const s of this.sessions) s.sendEvent(message);
  }

  get clientCount(): number {
    return this.sessions.size;
  }

  /** Stops accepting, drops every client and removes the socket file. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const s of [...this.sessions]) s.close();
      await closed;
      await unlink(this.path).catch(() => undefined);
    })();
    return this.closing;
  }
}
