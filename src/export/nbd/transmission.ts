import type { Socket } from 'node:net';
import type { Logger } from '../../log.js';
import { strerror } from '../../image/errno.js';
import type { Negotiated } from './negotiation.js';
import { blockStatusChunks, tailStatus } from './block-status.js';
import { BufferPool } from '../../image/buffer-pool.js';
import {
  CMD,
  CMD_FLAG,
  MAX_BUFFER_SIZE,
  MAX_REQUESTS,
  NBD_ERRNO,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  TF,
  cmdName,
  errnoName,
  nbdErrno,
} from '../../nbd/protocol.js';
import type { SocketReader } from '../../nbd/socket-reader.js';

export interface Request {
  flags: number;
  type: number;
  cookie: bigint;
  offset: number;
  length: number;
  data?: Buffer;
  /** The request was not read whole: it is answered, then the client dropped. */
  incomplete?: boolean;
}

/** Reply bytes queued on the socket past which no further request is read. */
const MAX_UNSENT = 64 << 20;

/** A request refused before it ran: the client gets EINVAL and this message (nbd_co_receive_request's errors). */
class Refused {
  constructor(readonly message: string) {}
}

/** The client is dropped (bad magic, a cut connection, DISC), after what is in flight has been answered. */
export class Disconnect extends Error {}

/** An error number on the wire and the message structured replies carry. */
interface Failure {
  errno: number;
  message: string;
}

/**
 * The transmission phase (nbd_trip and its helpers): requests read one
 * after the other, up to 16 served at once, each answered with QEMU's
 * simple reply or structured chunks. Replies go out whole, one socket
 * write per chunk, so chunks of different requests never mix.
 */
export class Transmission {
  private inFlight = 0;
  private slot: (() => void) | undefined;
  private readonly running = new Set<Promise<void>>();
  private readonly buffers = new BufferPool();

  constructor(
    private readonly socket: Socket,
    private readonly reader: SocketReader,
    private readonly n: Negotiated,
    private readonly log?: Logger,
    private readonly client = 'nbd',
  ) {}

  /** A request the node failed (an I/O error, not a malformed request): answered with its errno, and logged at warn. */
  private nodeFailed(req: Request, err: unknown, what: string): number {
    const errno = errnoName(err);
    this.log?.warn({ client: this.client, export: this.n.exp.name, type: req.type, offset: req.offset, length: req.length, errno }, `NBD request failed: ${what}`);
    return nbdErrno(errno);
  }

  /** Serves requests until the client leaves or must be dropped; resolves once every request in flight is answered. */
  async run(): Promise<void> {
    try {
      for (;;) {
        if (this.inFlight >= MAX_REQUESTS) await new Promise<void>((r) => (this.slot = r));
        // A client that sends requests but does not read replies waits for them to drain, instead of growing our buffers.
        if (this.socket.writableLength > MAX_UNSENT) await this.drained();
        if (this.reader.atEnd) return;
        const req = await this.receive();
        if (req === undefined) return;
        this.inFlight++;
        const p = this.serve(req).finally(() => {
          this.inFlight--;
          this.running.delete(p);
          const wake = this.slot;
          this.slot = undefined;
          wake?.();
        });
        this.running.add(p);
        if (req.incomplete) throw new Disconnect('Request handling failed in intermediate state');
      }
    } finally {
      await Promise.allSettled([...this.running]);
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** The next request, its payload read; undefined at a clean end of the connection. */
  private async receive(): Promise<(Request & { refused?: Refused }) | undefined> {
    let head: Buffer;
    try {
      head = await this.reader.read(28);
    } catch (err) {
      if (this.reader.atEnd && !(err as { partial?: boolean }).partial) return undefined;
      throw err;
    }
    const req: Request & { refused?: Refused } = {
      flags: head.readUInt16BE(4),
      type: head.readUInt16BE(6),
      cookie: head.readBigUInt64BE(8),
      offset: Number(head.readBigUInt64BE(16)),
      length: head.readUInt32BE(24),
    };
    // Answered with the cookie as parsed, then the connection ends (the stream cannot be trusted).
    if (head.readUInt32BE(0) !== REQUEST_MAGIC) {
      req.refused = new Refused(`invalid magic (got 0x${head.readUInt32BE(0).toString(16)})`);
      req.incomplete = true;
      return req;
    }
    // The client is done: what it has in flight is answered, then the connection closes.
    if (req.type === CMD.DISC) return undefined;
    const exp = this.n.exp;
    if ((req.type === CMD.READ || req.type === CMD.WRITE || req.type === CMD.CACHE) && req.length > MAX_BUFFER_SIZE) {
      req.refused = new Refused(`len (${req.length} ) is larger than max len (${MAX_BUFFER_SIZE})`);
      // A write's payload was not read: the stream is out of step.
      req.incomplete = req.type === CMD.WRITE;
      return req;
    }
    if (req.type === CMD.WRITE) req.data = await this.reader.readInto(this.buffers.take(req.length));
    const writing = req.type === CMD.WRITE || req.type === CMD.WRITE_ZEROES || req.type === CMD.TRIM;
    if (exp.flags & TF.READ_ONLY && writing) {
      req.refused = new Refused('Export is read-only');
    } else if (req.offset > exp.size || req.length > exp.size - req.offset) {
      req.refused = new Refused(`operation past EOF; From: ${head.readBigUInt64BE(16)}, Len: ${req.length}, Size: ${exp.size}`);
    } else {
      let valid: number = CMD_FLAG.FUA;
      if (req.type === CMD.READ && this.n.structured) valid |= CMD_FLAG.DF;
      else if (req.type === CMD.WRITE_ZEROES) valid |= CMD_FLAG.NO_HOLE | CMD_FLAG.FAST_ZERO;
      else if (req.type === CMD.BLOCK_STATUS) valid |= CMD_FLAG.REQ_ONE;
      if (req.flags & ~valid) req.refused = new Refused(`unsupported flags for command ${cmdName(req.type)} (got 0x${req.flags.toString(16)})`);
    }
    return req;
  }

  private async serve(req: Request & { refused?: Refused }): Promise<void> {
    try {
      await this.serveRequest(req);
    } finally {
      if (req.data) this.buffers.give(req.data);
    }
  }

  private async serveRequest(req: Request & { refused?: Refused }): Promise<void> {
    if (req.refused) return this.generic(req, { errno: NBD_ERRNO.EINVAL, message: req.refused.message });
    const node = this.n.exp.node;
    const fua = (req.flags & CMD_FLAG.FUA) !== 0;
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<Failure | undefined> => {
      try {
        await fn();
        return undefined;
      } catch (err) {
        return { errno: this.nodeFailed(req, err, what), message: what };
      }
    };
    const flushIf = async (yes: boolean) => {
      if (yes) await node.flush();
    };
    const writethrough = this.n.exp.spec.writethrough;
    switch (req.type) {
      case CMD.READ:
        return this.read(req);
      case CMD.CACHE:
        return this.generic(req, await attempt('caching data failed', () => node.prefetch(req.offset, Math.min(req.length, Math.max(0, node.size() - req.offset)))));
      case CMD.WRITE:
        return this.generic(req, await attempt('writing to file failed', async () => {
          await node.write(req.offset, req.data!, { fua: fua || writethrough });
          await flushIf(writethrough);
        }));
      case CMD.WRITE_ZEROES:
        return this.generic(req, await attempt('writing to file failed', async () => {
          await node.writeZeroes(req.offset, req.length, { mayUnmap: (req.flags & CMD_FLAG.NO_HOLE) === 0, noFallback: (req.flags & CMD_FLAG.FAST_ZERO) !== 0 });
          await flushIf(fua || writethrough);
        }));
      case CMD.FLUSH:
        return this.generic(req, await attempt('flush failed', () => node.flush()));
      case CMD.TRIM:
        return this.generic(req, await attempt('discard failed', async () => {
          await node.discard(req.offset, req.length);
          await flushIf(fua);
        }));
      case CMD.BLOCK_STATUS:
        return this.blockStatus(req);
      default:
        return this.generic(req, { errno: NBD_ERRNO.EINVAL, message: `invalid request type (${req.type}) received` });
    }
  }

  private async read(req: Request): Promise<void> {
    const node = this.n.exp.node;
    if (req.flags & CMD_FLAG.FUA) {
      try {
        await node.flush();
      } catch (err) {
        return this.generic(req, { errno: this.nodeFailed(req, err, 'flush failed'), message: 'flush failed' });
      }
    }
    if (this.n.structured && !(req.flags & CMD_FLAG.DF) && req.length) return this.sparseRead(req);
    const data = this.buffers.take(req.length);
    try {
      await this.readAt(data, req.offset);
    } catch (err) {
      this.buffers.give(data);
      return this.generic(req, { errno: this.nodeFailed(req, err, 'reading from file failed'), message: 'reading from file failed' });
    }
    if (!this.n.structured) return this.simple(req.cookie, 0, data);
    if (req.length) return this.dataChunk(req.cookie, req.offset, data, true);
    this.buffers.give(data);
    this.chunk(req.cookie, REPLY_FLAG_DONE, REPLY_TYPE.NONE, []);
  }

  /** A structured read in extents of the node's block status: zero runs as holes, the rest as data (nbd_co_send_sparse_read). */
  private async sparseRead(req: Request): Promise<void> {
    const node = this.n.exp.node;
    const end = req.offset + req.length;
    for (let at = req.offset; at < end; ) {
      let len: number;
      let zero: boolean;
      try {
        const st = await tailStatus(node, at, end - at);
        len = Math.min(Math.max(st.length, 1), end - at);
        zero = st.zero;
      } catch (err) {
        return this.structuredError(req.cookie, this.nodeFailed(req, err, 'unable to check for holes'), `unable to check for holes: ${strerror(errnoName(err))}`);
      }
      const final = at + len === end;
      if (zero) {
        const hole = Buffer.allocUnsafe(12);
        hole.writeBigUInt64BE(BigInt(at), 0);
        hole.writeUInt32BE(len, 8);
        this.chunk(req.cookie, final ? REPLY_FLAG_DONE : 0, REPLY_TYPE.OFFSET_HOLE, [hole]);
      } else {
        const data = this.buffers.take(len);
        try {
          await this.readAt(data, at);
        } catch (err) {
          this.buffers.give(data);
          // QEMU drops the client here; an error chunk ends the reply and keeps the connection.
          return this.structuredError(req.cookie, this.nodeFailed(req, err, 'reading from file failed'), 'reading from file failed');
        }
        this.dataChunk(req.cookie, at, data, final);
      }
      at += len;
    }
  }

  /** Reads the node; bytes between its end and the export's (the last partial sector) read as zeroes. */
  private async readAt(buf: Buffer, offset: number): Promise<void> {
    const inNode = Math.max(0, Math.min(buf.length, this.n.exp.node.size() - offset));
    if (inNode < buf.length) buf.fill(0, inNode);
    if (inNode > 0) await this.n.exp.node.readInto(inNode === buf.length ? buf : buf.subarray(0, inNode), offset);
  }

  private async blockStatus(req: Request): Promise<void> {
    if (!req.length) return this.generic(req, { errno: NBD_ERRNO.EINVAL, message: 'need non-zero length' });
    const meta = this.n.meta;
    if (!meta.count) return this.generic(req, { errno: NBD_ERRNO.EINVAL, message: 'CMD_BLOCK_STATUS not negotiated' });
    const chunks = blockStatusChunks(this.n.exp, meta, req.offset, req.length, (req.flags & CMD_FLAG.REQ_ONE) !== 0);
    for (let i = 0; i < chunks.length; i++) {
      const last = i === chunks.length - 1;
      const c = await chunks[i]!();
      if ('errno' in c) {
        // The error chunk ends the reply (QEMU stops at the failing context too).
        return this.structuredError(req.cookie, nbdErrno(c.errno), 'can\'t get block status');
      }
      this.chunk(req.cookie, last ? REPLY_FLAG_DONE : 0, REPLY_TYPE.BLOCK_STATUS, [c.payload]);
    }
  }

  // --- replies

  /** nbd_send_generic_reply: success or error as a simple reply, or an error chunk once structured replies are on. */
  private generic(req: Request, failure: Failure | undefined): void {
    if (failure && this.n.structured) return this.structuredError(req.cookie, failure.errno, failure.message);
    this.simple(req.cookie, failure?.errno ?? 0);
  }

  private simple(cookie: bigint, errno: number, data?: Buffer): void {
    const h = Buffer.allocUnsafe(16);
    h.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(errno, 4);
    h.writeBigUInt64BE(cookie, 8);
    this.send(data && data.length ? [h, data] : [h], data);
  }

  /**
   * One reply or chunk, its parts written back to back (nothing else can
   * come between: this does not wait). `release` (a pooled buffer among
   * the parts) goes back to the pool once the socket is done with it.
   */
  private send(parts: Buffer[], release?: Buffer): void {
    const done = release ? () => this.buffers.give(release) : undefined;
    if (this.socket.destroyed) return done?.();
    // Replies finished in the same turn of the event loop leave in one system call.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    parts.forEach((p, i) => this.socket.write(p, i === parts.length - 1 ? done : undefined));
  }
  private corked = false;

  private chunk(cookie: bigint, flags: number, type: number, payload: Buffer[], release?: Buffer): void {
    const len = payload.reduce((n, b) => n + b.length, 0);
    const h = Buffer.allocUnsafe(20);
    h.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeUInt32BE(len, 16);
    // Small parts are joined (and a pooled one is free at once); a data payload goes as it is, not copied.
    if (len <= 4096) {
      this.send([Buffer.concat([h, ...payload])]);
      if (release) this.buffers.give(release);
    } else this.send([h, ...payload], release);
  }

  private dataChunk(cookie: bigint, offset: number, data: Buffer, final: boolean): void {
    const off = Buffer.allocUnsafe(8);
    off.writeBigUInt64BE(BigInt(offset));
    this.chunk(cookie, final ? REPLY_FLAG_DONE : 0, REPLY_TYPE.OFFSET_DATA, [off, data], data);
  }

  private structuredError(cookie: bigint, errno: number, message: string): void {
    const msg = Buffer.from(message, 'utf8');
    const h = Buffer.allocUnsafe(6);
    h.writeUInt32BE(errno, 0);
    h.writeUInt16BE(msg.length, 4);
    this.chunk(cookie, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, [h, msg]);
  }
}
