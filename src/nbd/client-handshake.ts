import type { Socket } from 'node:net';
import { BlockError } from '../image/errors.js';
import {
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INFO,
  MAX_BUFFER_SIZE,
  NBD_MAGIC,
  OPT,
  OPTS_MAGIC,
  REP,
  REP_MAGIC,
  optName,
  repName,
} from './protocol.js';
import { ConnectionClosed, type SocketReader } from './socket-reader.js';

/** The oldstyle handshake's second magic (NBD_CLIENT_MAGIC). */
const CLIENT_MAGIC = 0x00420281861253n;

/** What the client asks for (the IN fields of QEMU's NBDExportInfo). */
export interface HandshakeRequest {
  /** The export's name; '' for the server's default export. */
  exportName: string;
  /** The one meta context to select instead of base:allocation (x-dirty-bitmap). */
  metaContext?: string;
}

/** What the server told of the export (the OUT fields of NBDExportInfo). */
export interface ExportInfo {
  size: number;
  /** Transmission flags (TF). */
  flags: number;
  structuredReply: boolean;
  /** The meta context asked for was selected; block status may be asked. */
  baseAllocation: boolean;
  contextId: number;
  /** Block sizes from NBD_INFO_BLOCK_SIZE, 0 when the server sent none. */
  minBlock: number;
  optBlock: number;
  maxBlock: number;
}

/** A failed handshake, worded as nbd/client.c words it (the QMP error blockdev-add gives). */
const fail = (message: string) => new BlockError('IO', message, { errno: 'EINVAL' });

const isPowerOf2 = (n: number) => n > 0 && (n & (n - 1)) === 0;

/**
 * The client side of the fixed-newstyle handshake (nbd/client.c
 * nbd_receive_negotiate): client flags, STRUCTURED_REPLY, one
 * SET_META_CONTEXT, then GO with a request for block sizes — falling back
 * as QEMU does to LIST and EXPORT_NAME for servers without GO, and to
 * simple replies without block status for servers without structured
 * replies. Oldstyle servers are taken for the default export only.
 */
export class ClientHandshake {
  constructor(
    private readonly socket: Socket,
    private readonly reader: SocketReader,
  ) {}

  async run(req: HandshakeRequest): Promise<ExportInfo> {
    const info: ExportInfo = { size: 0, flags: 0, structuredReply: false, baseAllocation: false, contextId: 0, minBlock: 0, optBlock: 0, maxBlock: 0 };
    const magic = (await this.read(8, 'initial magic')).readBigUInt64BE(0);
    if (magic !== NBD_MAGIC) throw fail(`Bad initial magic received: 0x${magic.toString(16)}`);
    const second = (await this.read(8, 'server magic')).readBigUInt64BE(0);
    if (second === CLIENT_MAGIC) {
      if (req.exportName !== '') throw fail('Server does not support non-empty export names');
      info.size = Number((await this.read(8, 'export length')).readBigUInt64BE(0));
      const oldflags = (await this.read(4, 'export flags')).readUInt32BE(0);
      if (oldflags & ~0xffff) throw fail(`Unexpected export flags ${oldflags.toString(16)}x`);
      info.flags = oldflags;
      await this.read(124, 'reserved block');
      return info;
    }
    if (second !== OPTS_MAGIC) throw fail(`Bad server magic received: 0x${second.toString(16)}`);
    const global = (await this.read(2, 'server flags')).readUInt16BE(0);
    const fixed = (global & FLAG_FIXED_NEWSTYLE) !== 0;
    const zeroes = (global & FLAG_NO_ZEROES) === 0;
    this.u32((fixed ? FLAG_C_FIXED_NEWSTYLE : 0) | (zeroes ? 0 : FLAG_C_NO_ZEROES));
    if (fixed) {
      info.structuredReply = await this.simpleOption(OPT.STRUCTURED_REPLY);
      if (info.structuredReply) {
        const id = await this.setMetaContext(req.exportName, req.metaContext ?? 'base:allocation');
        info.baseAllocation = id !== undefined;
        info.contextId = id ?? 0;
      }
      if (await this.go(req.exportName, info)) return info;
      await this.queryExports(req.exportName);
    }
    this.option(OPT.EXPORT_NAME, Buffer.from(req.exportName));
    info.size = Number((await this.read(8, 'export length')).readBigUInt64BE(0));
    info.flags = (await this.read(2, 'export flags')).readUInt16BE(0);
    if (zeroes) await this.read(124, 'reserved block');
    return info;
  }

  /** nbd_read: exactly `n` bytes, or QEMU's "Failed to read <what>" error. */
  private async read(n: number, what: string): Promise<Buffer> {
    try {
      return await this.reader.read(n);
    } catch (err) {
      const why = err instanceof ConnectionClosed ? 'Unexpected end-of-file before all data were read' : (err as Error).message;
      throw fail(`Failed to read ${what}: ${why}`);
    }
  }

  private u32(n: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(n >>> 0);
    this.socket.write(b);
  }

  /** nbd_send_option_request. */
  private option(opt: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.allocUnsafe(16);
    h.writeBigUInt64BE(OPTS_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.socket.write(data.length ? Buffer.concat([h, data]) : h);
  }

  /** nbd_send_opt_abort: a courtesy before giving up; the server may hang up without a reply. */
  private abort(): void {
    if (!this.socket.destroyed) this.option(OPT.ABORT);
  }

  /** nbd_receive_option_reply: the header of a reply to `opt`. */
  private async reply(opt: number): Promise<{ type: number; length: number }> {
    let h: Buffer;
    try {
      h = await this.read(20, 'option reply');
    } catch (err) {
      this.abort();
      throw err;
    }
    const type = h.readUInt32BE(12);
    const length = h.readUInt32BE(16);
    if (h.readBigUInt64BE(0) !== REP_MAGIC) return this.abortWith('Unexpected option reply magic');
    const got = h.readUInt32BE(8);
    if (got !== opt) return this.abortWith(`Unexpected option type ${got} (${optName(got)}), expected ${opt} (${optName(opt)})`);
    return { type, length };
  }

  private abortWith(message: string): never {
    this.abort();
    throw fail(message);
  }

  /**
   * nbd_handle_reply_err: true for success; false for an error the caller
   * may fall back from (ERR_UNSUP, or any error unless `strict`); throws
   * QEMU's message for the others. The server's own text is only a hint in
   * QEMU, which QMP does not show.
   */
  private async replyErr(opt: number, rep: { type: number; length: number }, strict: boolean): Promise<boolean> {
    if (rep.type < 2 ** 31) return true;
    if (rep.length > MAX_BUFFER_SIZE) return this.abortWith(`server error ${rep.type} (${repName(rep.type)}) message is too long`);
    if (rep.length) await this.read(rep.length, `option error ${rep.type} (${repName(rep.type)}) message`);
    if (rep.type === REP.ERR_UNSUP || !strict) return false;
    const o = `option ${opt} (${optName(opt)})`;
    const words: Record<number, string> = {
      [REP.ERR_POLICY]: `Denied by server for ${o}`,
      [REP.ERR_INVALID]: `Invalid parameters for ${o}`,
      [REP.ERR_PLATFORM]: `Server lacks support for ${o}`,
      [REP.ERR_TLS_REQD]: `TLS negotiation required before ${o}`,
      [REP.ERR_UNKNOWN]: 'Requested export not available',
      [REP.ERR_SHUTDOWN]: `Server shutting down before ${o}`,
      [REP.ERR_BLOCK_SIZE_REQD]: `Server requires INFO_BLOCK_SIZE for ${o}`,
    };
    return this.abortWith(words[rep.type] ?? `Unknown error code when asking for ${o}`);
  }

  /** nbd_request_simple_option (not strict): whether the server acknowledged an option without data. */
  private async simpleOption(opt: number): Promise<boolean> {
    this.option(opt);
    const rep = await this.reply(opt);
    if (!(await this.replyErr(opt, rep, false))) return false;
    if (rep.type !== REP.ACK) return this.abortWith(`Server answered option ${opt} (${optName(opt)}) with unexpected reply ${rep.type} (${repName(rep.type)})`);
    if (rep.length !== 0) return this.abortWith(`Option ${opt} ('${optName(opt)}') response length is ${rep.length} (it should be zero)`);
    return true;
  }

  /** nbd_negotiate_simple_meta_context: the id of `context`, or undefined when the server selected none. */
  private async setMetaContext(exportName: string, context: string): Promise<number | undefined> {
    const name = Buffer.from(exportName);
    const query = Buffer.from(context);
    const data = Buffer.alloc(4 + name.length + 4 + 4 + query.length);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    data.writeUInt32BE(1, 4 + name.length);
    data.writeUInt32BE(query.length, 8 + name.length);
    query.copy(data, 12 + name.length);
    this.option(OPT.SET_META_CONTEXT, data);
    let id: number | undefined;
    for (;;) {
      const rep = await this.reply(OPT.SET_META_CONTEXT);
      if (!(await this.replyErr(OPT.SET_META_CONTEXT, rep, false))) return id;
      if (rep.type === REP.ACK) {
        if (rep.length !== 0) return this.abortWith('Unexpected length to ACK response');
        return id;
      }
      if (rep.type !== REP.META_CONTEXT) {
        return this.abortWith(`Unexpected reply type ${rep.type} (${repName(rep.type)}), expected ${REP.META_CONTEXT} (${repName(REP.META_CONTEXT)})`);
      }
      if (rep.length <= 4 || rep.length > MAX_BUFFER_SIZE) return this.abortWith(`Failed to negotiate meta context, server answered with unexpected length ${rep.length}`);
      if (id !== undefined) return this.abortWith('Server answered with more than one context');
      const got = (await this.read(4, 'context id')).readUInt32BE(0);
      const answered = (await this.read(rep.length - 4, 'context name')).toString();
      if (answered !== context) return this.abortWith(`Failed to negotiate meta context '${context}', server answered with different context '${answered}'`);
      id = got;
    }
  }

  /** nbd_opt_info_or_go with GO: true once in transmission, false when the server lacks GO. */
  private async go(exportName: string, info: ExportInfo): Promise<boolean> {
    const name = Buffer.from(exportName);
    const data = Buffer.alloc(4 + name.length + 4);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    data.writeUInt16BE(1, 4 + name.length);
    data.writeUInt16BE(INFO.BLOCK_SIZE, 6 + name.length);
    this.option(OPT.GO, data);
    info.flags = 0;
    for (;;) {
      const rep = await this.reply(OPT.GO);
      if (!(await this.replyErr(OPT.GO, rep, true))) return false;
      if (rep.type === REP.ACK) {
        if (rep.length) return this.abortWith('server sent invalid NBD_REP_ACK');
        // The protocol requires INFO_EXPORT with at least HAS_FLAGS set: flags still 0 mark a broken server.
        if (!info.flags) return this.abortWith('broken server omitted NBD_INFO_EXPORT');
        return true;
      }
      if (rep.type !== REP.INFO) return this.abortWith(`unexpected reply type ${rep.type} (${repName(rep.type)}), expected ${REP.INFO} (${repName(REP.INFO)})`);
      if (rep.length < 2) return this.abortWith(`NBD_REP_INFO length ${rep.length} is too short`);
      const type = (await this.read(2, 'info type')).readUInt16BE(0);
      const len = rep.length - 2;
      if (type === INFO.EXPORT) {
        if (len !== 10) return this.abortWith(`remaining export info len ${len} is unexpected size`);
        const b = await this.read(10, 'info size');
        info.size = Number(b.readBigUInt64BE(0));
        info.flags = b.readUInt16BE(8);
        if (info.minBlock && info.size % info.minBlock) return this.abortWith(`export size ${info.size} is not multiple of minimum block size ${info.minBlock}`);
      } else if (type === INFO.BLOCK_SIZE) {
        if (len !== 12) return this.abortWith(`remaining export info len ${len} is unexpected size`);
        const b = await this.read(12, 'info block sizes');
        info.minBlock = b.readUInt32BE(0);
        info.optBlock = b.readUInt32BE(4);
        info.maxBlock = b.readUInt32BE(8);
        if (!isPowerOf2(info.minBlock)) return this.abortWith(`server minimum block size ${info.minBlock} is not a power of two`);
        if (!isPowerOf2(info.optBlock) || info.optBlock < info.minBlock) return this.abortWith(`server preferred block size ${info.optBlock} is not valid`);
        if (info.maxBlock < info.minBlock) return this.abortWith(`server maximum block size ${info.maxBlock} is not valid`);
      } else {
        await this.read(len, 'info payload');
      }
    }
  }

  /** nbd_receive_query_exports: before EXPORT_NAME (which cannot say no), a nicer error for a missing export. */
  private async queryExports(wanted: string): Promise<void> {
    this.option(OPT.LIST);
    let any = false;
    let found = false;
    for (;;) {
      const rep = await this.reply(OPT.LIST);
      if (!(await this.replyErr(OPT.LIST, rep, true))) return;
      if (rep.type === REP.ACK) {
        if (rep.length) return this.abortWith(`incorrect option length ${rep.length}`);
        break;
      }
      if (rep.type !== REP.SERVER) return this.abortWith(`Unexpected reply type ${rep.type} (${repName(rep.type)}), expected ${REP.SERVER} (${repName(REP.SERVER)})`);
      if (rep.length < 4 || rep.length > MAX_BUFFER_SIZE) return this.abortWith(`incorrect option length ${rep.length}`);
      const body = await this.read(rep.length, 'export list');
      const len = body.readUInt32BE(0);
      if (len > rep.length - 4) return this.abortWith("incorrect name length in server's list response");
      any = true;
      if (body.subarray(4, 4 + len).toString() === wanted) found = true;
    }
    // An empty list may be a server that cannot list: assume the export is there, as QEMU does.
    if (any && !found) this.abortWith(`No export with name '${wanted}' available`);
  }
}
