import type { Socket } from 'node:net';
import { strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import type { ExportInfo } from './client-handshake.js';
import {
  CMD,
  MAX_BUFFER_SIZE,
  MAX_REQUESTS,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  replyTypeName,
  systemErrno,
} from './protocol.js';
import { ConnectionClosed, SocketReader } from './socket-reader.js';

/**
 * The connection failed under a request. `protocol`: the server broke the
 * protocol (QEMU then gives up on it for good, NBD_CLIENT_QUIT); otherwise
 * the connection was lost and may be made again (-EIO in block/nbd.c).
 */
export class ChannelError extends BlockError {
  constructor(
    message: string,
    readonly protocol: boolean,
  ) {
    super('IO', message, { errno: protocol ? 'EINVAL' : 'EIO' });
  }
}

/** The server failed one request; the connection is fine. */
const requestError = (nbdErr: number): BlockError => {
  const errno = systemErrno(nbdErr);
  return new BlockError('IO', strerror(errno), { errno });
};

/** One extent as block status answered it (NBDExtent): length and the context's flags. */
export interface StatusExtent {
  length: number;
  flags: number;
}

interface Pending {
  cmd: number;
  offset: number;
  length: number;
  /** READ: where the data goes. */
  buf?: Buffer;
  /** A structured chunk came: a simple reply now breaks the protocol. */
  structured: boolean;
  /** The first error chunk's error (the request fails once its last chunk arrived). */
  error?: BlockError;
  extent?: StatusExtent;
  resolve: (p: Pending) => void;
  reject: (e: Error) => void;
}

/**
 * The transmission phase of one connection (block/nbd.c's request and
 * reply paths): requests go out with a handle each, up to MAX_REQUESTS
 * in flight (more wait for a slot, as free_sema); one loop reads replies
 * and hands each chunk to the request its handle names, so replies may
 * come in any order. A lost connection or a protocol error fails every
 * request in flight with a ChannelError and ends the session.
 */
export class ClientSession {
  private readonly pending = new Map<bigint, Pending>();
  private readonly waiting: Array<() => void> = [];
  private nextHandle = 1n;
  private dead: ChannelError | undefined;
  private readonly ended: Promise<ChannelError>;

  constructor(
    private readonly socket: Socket,
    private readonly reader: SocketReader,
    readonly info: ExportInfo,
  ) {
    this.ended = this.receive();
  }

  /** Resolves with why the session ended (never rejects). */
  get whenDead(): Promise<ChannelError> {
    return this.ended;
  }

  get alive(): boolean {
    return this.dead === undefined;
  }

  /**
   * Sends one request and waits for its whole reply: `data` is what a
   * WRITE sends; a READ fills `into` (the caller's buffer, so large reads
   * are not copied again) or a buffer of its own, and resolves with it;
   * BLOCK_STATUS resolves with its extent.
   */
  async request(cmd: number, flags: number, offset: number, length: number, data?: Uint8Array, into?: Uint8Array): Promise<{ data?: Buffer; extent?: StatusExtent }> {
    while (this.pending.size >= MAX_REQUESTS && !this.dead) await new Promise<void>((r) => this.waiting.push(r));
    if (this.dead) throw this.dead;
    const handle = this.nextHandle++;
    const done = new Promise<Pending>((resolve, reject) => {
      this.pending.set(handle, { cmd, offset, length, structured: false, resolve, reject, ...(cmd === CMD.READ ? { buf: into ? Buffer.from(into.buffer, into.byteOffset, length) : Buffer.allocUnsafe(length) } : {}) });
    });
    const h = Buffer.allocUnsafe(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(cmd, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    // Both writes are queued in this turn, so no other request's bytes come between header and data.
    this.socket.write(h);
    if (data) this.socket.write(data);
    const p = await done;
    if (p.error) throw p.error;
    return { data: p.buf, extent: p.extent };
  }

  /** NBD_CMD_DISC and a clean close (nbd_client_close): the server finishes what is in flight and hangs up. */
  async disconnect(): Promise<void> {
    if (!this.dead && !this.socket.destroyed) {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC, 0);
      h.writeUInt16BE(CMD.DISC, 6);
      this.socket.end(h);
    }
    this.fail(new ChannelError('Connection closed', false));
    // The server closes once it has read the request; a server that does not is not waited for long.
    const timer = setTimeout(() => this.socket.destroy(), 1000);
    await this.ended;
    if (!this.socket.closed) await new Promise((r) => this.socket.once('close', r));
    clearTimeout(timer);
  }

  /** Drops the connection at once (shutdown without DISC). */
  destroy(): void {
    this.socket.destroy();
    this.fail(new ChannelError('Connection closed', false));
  }

  private fail(err: ChannelError): void {
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
    for (const w of this.waiting.splice(0)) w();
  }

  /** The reply loop (nbd_receive_replies for every handle at once); ends with the reason the session is over. */
  private async receive(): Promise<ChannelError> {
    try {
      for (;;) {
        if (this.dead) break;
        const magic = (await this.reader.read(4)).readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) await this.simpleReply();
        else if (magic === STRUCTURED_REPLY_MAGIC) await this.structuredChunk();
        else throw new ChannelError(`invalid magic (got 0x${magic.toString(16)})`, true);
      }
    } catch (err) {
      if (err instanceof ChannelError) this.fail(err);
      else if (err instanceof ConnectionClosed) this.fail(new ChannelError(err.partial ? 'Unexpected end-of-file before all data were read' : 'Connection closed', false));
      else this.fail(new ChannelError((err as Error).message, false));
      this.socket.destroy();
    }
    return this.dead!;
  }

  private take(handle: bigint): Pending {
    const p = this.pending.get(handle);
    if (!p) throw new ChannelError(`Protocol error: reply for unknown handle ${handle}`, true);
    return p;
  }

  private finish(handle: bigint, p: Pending): void {
    this.pending.delete(handle);
    this.waiting.shift()?.();
    p.resolve(p);
  }

  private async simpleReply(): Promise<void> {
    const b = await this.reader.read(12);
    const error = b.readUInt32BE(0);
    const handle = b.readBigUInt64BE(4);
    const p = this.take(handle);
    // A read over structured replies, or any request after a chunk of its own, must not get a simple reply.
    if (p.structured || (p.cmd === CMD.READ && this.info.structuredReply)) {
      throw new ChannelError('Protocol error: simple reply when structured reply chunk was expected', true);
    }
    if (error) p.error = requestError(error);
    else if (p.buf && p.length) await this.reader.readInto(p.buf);
    // A simple reply carries no extents: the request fails as one whose chunks had none.
    if (p.cmd === CMD.BLOCK_STATUS && !p.error) p.error = new BlockError('IO', 'Server did not reply with any status extents', { errno: 'EIO' });
    this.finish(handle, p);
  }

  private async structuredChunk(): Promise<void> {
    const h = await this.reader.read(16);
    const flags = h.readUInt16BE(0);
    const type = h.readUInt16BE(2);
    const handle = h.readBigUInt64BE(4);
    const length = h.readUInt32BE(12);
    if (!this.info.structuredReply) throw new ChannelError('Protocol error: structured reply without negotiation', true);
    const p = this.take(handle);
    p.structured = true;
    if (type === REPLY_TYPE.NONE) {
      if (!(flags & REPLY_FLAG_DONE)) throw new ChannelError('Protocol error: NBD_REPLY_TYPE_NONE chunk without NBD_REPLY_FLAG_DONE flag', true);
      if (length) throw new ChannelError('Protocol error: NBD_REPLY_TYPE_NONE chunk with nonzero length', true);
    } else if (type === REPLY_TYPE.OFFSET_DATA) {
      if (p.cmd !== CMD.READ) throw new ChannelError('Unexpected NBD_REPLY_TYPE_OFFSET_DATA chunk', true);
      await this.offsetData(p, length);
    } else {
      if (length > MAX_BUFFER_SIZE) throw new ChannelError('Payload too large', true);
      const payload = await this.reader.read(length);
      if (type & (1 << 15)) this.errorChunk(p, type, payload);
      else if (type === REPLY_TYPE.OFFSET_HOLE && p.cmd === CMD.READ) this.offsetHole(p, payload);
      else if (type === REPLY_TYPE.BLOCK_STATUS && p.cmd === CMD.BLOCK_STATUS) this.statusChunk(p, payload);
      else throw new ChannelError(`Unexpected reply type: ${type} (${replyTypeName(type)}) for CMD_${p.cmd === CMD.READ ? 'READ' : 'BLOCK_STATUS'}`, true);
    }
    if (flags & REPLY_FLAG_DONE) {
      // The request fails, the connection does not (nbd_co_receive_blockstatus_reply).
      if (p.cmd === CMD.BLOCK_STATUS && !p.extent && !p.error) p.error = new BlockError('IO', 'Server did not reply with any status extents', { errno: 'EIO' });
      this.finish(handle, p);
    }
  }

  /** nbd_co_receive_offset_data_payload: the data goes straight into the request's buffer. */
  private async offsetData(p: Pending, length: number): Promise<void> {
    if (length <= 8) throw new ChannelError('Protocol error: invalid payload for NBD_REPLY_TYPE_OFFSET_DATA', true);
    const offset = Number((await this.reader.read(8)).readBigUInt64BE(0));
    const data = length - 8;
    if (offset < p.offset || data > p.length || offset > p.offset + p.length - data) {
      throw new ChannelError('Protocol error: server sent chunk exceeding requested region', true);
    }
    await this.reader.readInto(p.buf!.subarray(offset - p.offset, offset - p.offset + data));
  }

  private offsetHole(p: Pending, payload: Buffer): void {
    if (payload.length !== 12) throw new ChannelError('Protocol error: invalid payload for NBD_REPLY_TYPE_OFFSET_HOLE', true);
    const offset = Number(payload.readBigUInt64BE(0));
    const hole = payload.readUInt32BE(8);
    if (!hole || offset < p.offset || hole > p.length || offset > p.offset + p.length - hole) {
      throw new ChannelError('Protocol error: server sent chunk exceeding requested region', true);
    }
    p.buf!.fill(0, offset - p.offset, offset - p.offset + hole);
  }

  /** nbd_parse_blockstatus_payload: one extent asked for (REQ_ONE); extra ones are ignored and the length clamped, as QEMU forgives. */
  private statusChunk(p: Pending, payload: Buffer): void {
    if (p.extent) throw new ChannelError('Several BLOCK_STATUS chunks in reply', true);
    if (payload.length < 12) throw new ChannelError('Protocol error: invalid payload for NBD_REPLY_TYPE_BLOCK_STATUS', true);
    const id = payload.readUInt32BE(0);
    if (id !== this.info.contextId) {
      throw new ChannelError(`Protocol error: unexpected context id ${id} for NBD_REPLY_TYPE_BLOCK_STATUS, when negotiated context id is ${this.info.contextId}`, true);
    }
    let length = payload.readUInt32BE(4);
    let flags = payload.readUInt32BE(8);
    if (length === 0) throw new ChannelError('Protocol error: server sent status chunk with zero length', true);
    const min = this.info.minBlock;
    // qemu-nbd 3.1 reports an unaligned hole at an unaligned EOF: round as block/nbd.c does rather than fail.
    if (min && length % min) {
      if (length > min) length -= length % min;
      else (length = min), (flags = 0);
    }
    p.extent = { length: Math.min(length, p.length), flags };
  }

  private errorChunk(p: Pending, type: number, payload: Buffer): void {
    if (payload.length < 6) throw new ChannelError('Protocol error: invalid payload for structured error', true);
    const error = payload.readUInt32BE(0);
    if (error === 0) throw new ChannelError('Protocol error: server sent structured error chunk with error = 0', true);
    const msgLen = payload.readUInt16BE(4);
    if (msgLen > payload.length - 6) throw new ChannelError('Protocol error: server sent structured error chunk with incorrect message size', true);
    if (type === REPLY_TYPE.ERROR_OFFSET && payload.length < 6 + msgLen + 8) throw new ChannelError('Protocol error: invalid payload for structured error', true);
    p.error ??= requestError(error);
  }
}
