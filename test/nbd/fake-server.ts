/**
 * A scripted NBD server for the client's edge cases, which QEMU's servers
 * never show: no NBD_OPT_GO or no structured replies (nbd/client.c's
 * fallbacks), replies out of order, error chunks, protocol violations.
 * It serves `size` bytes of memory; `reply` may answer a request itself.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { CMD, NBD_MAGIC, OPT, OPTS_MAGIC, REP, REP_MAGIC, REPLY_FLAG_DONE, REPLY_TYPE, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, TF } from '../../src/nbd/protocol.js';
import { SocketReader } from '../../src/nbd/socket-reader.js';

export interface FakeRequest {
  type: number;
  flags: number;
  handle: Buffer;
  offset: number;
  length: number;
}

export interface FakeOptions {
  /** Exports by name (default: one, 'exp'). */
  exports?: string[];
  go?: boolean;
  structured?: boolean;
  size?: number;
  /** Answers a request instead of the default; returns true when it did. */
  reply?: (req: FakeRequest, sock: Socket, fake: FakeServer) => boolean | Promise<boolean>;
}

export class FakeServer {
  readonly data: Buffer;
  connections = 0;
  readonly requests: FakeRequest[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    readonly path: string,
    private readonly server: Server,
    readonly o: FakeOptions,
  ) {
    this.data = Buffer.alloc(o.size ?? 1 << 20);
  }

  static async start(dir: string, o: FakeOptions = {}): Promise<FakeServer> {
    const path = join(dir, 'fake.sock');
    const server = createServer();
    const fake = new FakeServer(path, server, o);
    server.on('connection', (s) => void fake.serve(s).catch(() => s.destroy()));
    await new Promise<void>((r) => server.listen(path, r));
    return fake;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  /** An option reply. */
  static rep(sock: Socket, opt: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(REP_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type, 12);
    h.writeUInt32BE(data.length, 16);
    sock.write(Buffer.concat([h, data]));
  }

  /** A simple reply, with data for a successful read. */
  static simple(sock: Socket, handle: Buffer, error: number, data?: Buffer): void {
    const h = Buffer.alloc(16);
    h.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    handle.copy(h, 8);
    sock.write(data ? Buffer.concat([h, data]) : h);
  }

  /** A structured reply chunk. */
  static chunk(sock: Socket, handle: Buffer, type: number, flags: number, payload: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(20);
    h.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    handle.copy(h, 8);
    h.writeUInt32BE(payload.length, 16);
    sock.write(Buffer.concat([h, payload]));
  }

  private async serve(sock: Socket): Promise<void> {
    this.connections++;
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    const r = new SocketReader(sock);
    const g = Buffer.alloc(18);
    g.writeBigUInt64BE(NBD_MAGIC, 0);
    g.writeBigUInt64BE(OPTS_MAGIC, 8);
    g.writeUInt16BE(3, 16);
    sock.write(g);
    await r.read(4);
    const exports = this.o.exports ?? ['exp'];
    const flags = TF.HAS_FLAGS | TF.SEND_FLUSH | TF.SEND_WRITE_ZEROES;
    let structured = false;
    for (;;) {
      const h = await r.read(16);
      const opt = h.readUInt32BE(8);
      const data = await r.read(h.readUInt32BE(12));
      if (opt === OPT.EXPORT_NAME) {
        const e = Buffer.alloc(10);
        e.writeBigUInt64BE(BigInt(this.data.length), 0);
        e.writeUInt16BE(flags, 8);
        sock.write(e);
        break;
      }
      if (opt === OPT.STRUCTURED_REPLY && this.o.structured !== false) {
        structured = true;
        FakeServer.rep(sock, opt, REP.ACK);
      } else if (opt === OPT.SET_META_CONTEXT && structured) {
        const ctx = Buffer.concat([Buffer.alloc(4), Buffer.from('base:allocation')]);
        FakeServer.rep(sock, opt, REP.META_CONTEXT, ctx);
        FakeServer.rep(sock, opt, REP.ACK);
      } else if (opt === OPT.GO && this.o.go !== false) {
        const name = data.subarray(4, 4 + data.readUInt32BE(0)).toString();
        if (!exports.includes(name)) {
          FakeServer.rep(sock, opt, REP.ERR_UNKNOWN, Buffer.from(`export '${name}' not present`));
          continue;
        }
        const info = Buffer.alloc(12);
        info.writeUInt16BE(0, 0);
        info.writeBigUInt64BE(BigInt(this.data.length), 2);
        info.writeUInt16BE(flags, 10);
        FakeServer.rep(sock, opt, REP.INFO, info);
        FakeServer.rep(sock, opt, REP.ACK);
        break;
      } else if (opt === OPT.LIST) {
        for (const e of exports) {
          const b = Buffer.alloc(4 + e.length);
          b.writeUInt32BE(e.length, 0);
          b.write(e, 4);
          FakeServer.rep(sock, opt, REP.SERVER, b);
        }
        FakeServer.rep(sock, opt, REP.ACK);
      } else if (opt === OPT.ABORT) {
        sock.end();
        return;
      } else {
        FakeServer.rep(sock, opt, REP.ERR_UNSUP);
      }
    }
    for (;;) {
      const h = await r.read(28);
      if (h.readUInt32BE(0) !== REQUEST_MAGIC) throw new Error('bad request magic');
      const req: FakeRequest = { flags: h.readUInt16BE(4), type: h.readUInt16BE(6), handle: Buffer.from(h.subarray(8, 16)), offset: Number(h.readBigUInt64BE(16)), length: h.readUInt32BE(24) };
      this.requests.push(req);
      const payload = req.type === CMD.WRITE ? await r.read(req.length) : undefined;
      if (req.type === CMD.DISC) {
        sock.end();
        return;
      }
      if (this.o.reply && (await this.o.reply(req, sock, this))) continue;
      if (payload) payload.copy(this.data, req.offset);
      if (req.type === CMD.WRITE_ZEROES) this.data.fill(0, req.offset, req.offset + req.length);
      const read = req.type === CMD.READ ? this.data.subarray(req.offset, req.offset + req.length) : undefined;
      if (!structured) FakeServer.simple(sock, req.handle, 0, read);
      else if (read) {
        const off = Buffer.alloc(8);
        off.writeBigUInt64BE(BigInt(req.offset));
        FakeServer.chunk(sock, req.handle, REPLY_TYPE.OFFSET_DATA, REPLY_FLAG_DONE, Buffer.concat([off, read]));
      } else if (req.type === CMD.BLOCK_STATUS) {
        const p = Buffer.alloc(12);
        p.writeUInt32BE(req.length, 4);
        FakeServer.chunk(sock, req.handle, REPLY_TYPE.BLOCK_STATUS, REPLY_FLAG_DONE, p);
      } else FakeServer.chunk(sock, req.handle, REPLY_TYPE.NONE, REPLY_FLAG_DONE);
    }
  }
}
