import { access, link, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type Server, type Socket, createServer } from 'node:net';
import type { Logger } from '../../log.js';
import { strerror } from '../../image/errno.js';
import { BlockError } from '../../image/errors.js';
import { NbdConnection } from './connection.js';
import type { NbdExport } from './export.js';
import type { ExportDirectory } from './negotiation.js';

export type NbdAddress = { type: 'unix'; path: string } | { type: 'inet'; host: string; port: string };

export interface NbdServerOptions {
  addr: NbdAddress;
  /** 0: no limit. Past the limit, new connections wait, unanswered, until one ends (QEMU stops accepting). */
  maxConnections: number;
  log?: Logger;
}

/** Longest Unix socket path (sun_path is 108 bytes with its NUL). */
const UNIX_PATH_MAX = 107;

const bindError = (err: unknown, what: string) => {
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  return new BlockError('IO', `${what}: ${strerror(code)}`, { errno: code, cause: err });
};

/**
 * The NBD server of nbd-server-start (blockdev-nbd.c): one listening
 * socket, the exports clients may choose (in the order they were added),
 * and the connections.
 */
export class NbdServer implements ExportDirectory {
  private readonly exports: NbdExport[] = [];
  private readonly connections = new Set<NbdConnection>();
  private readonly waiting: Socket[] = [];
  private active = 0;

  private constructor(
    private readonly server: Server,
    private readonly opts: NbdServerOptions,
    /** Called when a client leaves an export (its deletion may be waiting for that). */
    private readonly onExportLeft: (exp: NbdExport) => void,
  ) {
    server.on('connection', (s) => this.accept(s));
  }

  static async start(opts: NbdServerOptions, onExportLeft: (exp: NbdExport) => void): Promise<NbdServer> {
    const server = createServer();
    const a = opts.addr;
    if (a.type === 'unix') {
      if (Buffer.byteLength(a.path) > UNIX_PATH_MAX) throw new BlockError('INVALID_ARGUMENT', `UNIX socket path '${a.path}' is too long`);
      // QEMU replaces whatever is at the path.
      try {
        await unlink(a.path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw bindError(err, `Failed to unlink socket ${a.path}`);
      }
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        if (a.type === 'unix') {
          // libuv says EACCES where bind(2) says ENOENT: a directory on the path is missing.
          void access(dirname(a.path)).then(
            () => reject(bindError(err, `Failed to bind socket to ${a.path}`)),
            (e: unknown) => reject(bindError(e, `Failed to bind socket to ${a.path}`)),
          );
          return;
        }
        if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return reject(new BlockError('INVALID_ARGUMENT', `address resolution failed for ${a.host}:${a.port}: Name or service not known`));
        // inet_listen_saddr tries the port (range) and then gives up with this.
        if (err.code === 'EADDRINUSE') return reject(bindError(err, 'Failed to find an available port'));
        reject(bindError(err, 'Failed to bind socket'));
      });
      if (a.type === 'unix') server.listen(a.path, () => resolve());
      else {
        const port = Number(a.port);
        if (!/^\d+$/.test(a.port) || port > 65535) return reject(new BlockError('INVALID_ARGUMENT', `address resolution failed for ${a.host}:${a.port}: Servname not supported for ai_socktype`));
        server.listen({ host: a.host, port, backlog: 511 }, () => resolve());
      }
    });
    return new NbdServer(server, opts, onExportLeft);
  }

  /** Several clients may write at once only when more than one may connect. */
  get multiConn(): boolean {
    return this.opts.maxConnections !== 1;
  }

  /** Where it listens (the port an inet server with port 0 was given). */
  address(): NbdAddress {
    const a = this.opts.addr;
    if (a.type === 'unix') return a;
    const bound = this.server.address();
    return { type: 'inet', host: a.host, port: String(typeof bound === 'object' && bound ? bound.port : a.port) };
  }

  find(name: string): NbdExport | undefined {
    return this.exports.find((e) => e.name === name);
  }
  list(): readonly NbdExport[] {
    return this.exports;
  }
  addExport(exp: NbdExport): void {
    this.exports.push(exp);
  }
  /** New clients can no longer choose it; those connected stay until closed. */
  removeExport(exp: NbdExport): void {
    const i = this.exports.indexOf(exp);
    if (i >= 0) this.exports.splice(i, 1);
  }

  /** Connections served so far: numbers the clients in the logs. */
  private accepted = 0;

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    const max = this.opts.maxConnections;
    if (max > 0 && this.active >= max) {
      this.waiting.push(socket);
      socket.once('close', () => {
        const i = this.waiting.indexOf(socket);
        if (i >= 0) this.waiting.splice(i, 1);
      });
      return;
    }
    this.active++;
    const client = `nbd#${++this.accepted}`;
    this.opts.log?.debug({ client, peer: socket.remoteAddress ?? this.opts.addr.type }, 'NBD client connected');
    const c = new NbdConnection(socket, this, this.opts.log, this.onExportLeft, client);
    this.connections.add(c);
    void c.finished.then(() => {
      this.connections.delete(c);
      this.active--;
      const next = this.waiting.shift();
      if (next) this.accept(next);
    });
  }

  /**
   * Stops listening and drops every client (after the exports are gone).
   * nbd-server-stop removes a Unix socket's file; at the process's end
   * (`keepSocketFile`) QEMU leaves it, as it never closes the listener
   * then, and clients that remove it themselves afterwards (iotest 205's
   * tearDown) fail where it is gone.
   */
  async stop(opts: { keepSocketFile?: boolean } = {}): Promise<void> {
    const a = this.opts.addr;
    // libuv unlinks a listening socket's path when it closes it: a second name keeps the file, moved back after.
    const path = a.type === 'unix' ? a.path : undefined;
    const kept = path !== undefined && opts.keepSocketFile ? join(dirname(path), `.${basename(path)}.${process.pid}.kept`) : undefined;
    const keeping = path !== undefined && kept !== undefined && (await link(path, kept).then(() => true, () => false));
    // close() calls back once every connection is gone, so they are dropped first.
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.waiting.splice(0)) s.destroy();
    for (const c of this.connections) c.close();
    await Promise.all([...this.connections].map((c) => c.finished));
    await closed;
    if (keeping) await rename(kept, path).catch(() => unlink(kept).catch(() => undefined));
    else if (path !== undefined) await unlink(path).catch(() => undefined);
  }
}
