import type { Socket } from 'node:net';
import type { NbdExport } from './export.js';
import {
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INFO,
  MAX_BUFFER_SIZE,
  MAX_STRING_SIZE,
  META_ID,
  NBD_MAGIC,
  OPT,
  OPTS_MAGIC,
  REP,
  REP_MAGIC,
  TF,
  optName,
} from '../../nbd/protocol.js';
import type { SocketReader } from '../../nbd/socket-reader.js';

/** The exports a client can choose from (the server's list, in the order they were added). */
export interface ExportDirectory {
  find(name: string): NbdExport | undefined;
  list(): readonly NbdExport[];
}

/** Meta contexts selected by SET_META_CONTEXT (NBDExportMetaContexts). */
export interface MetaContexts {
  exp: NbdExport | undefined;
  baseAllocation: boolean;
  allocationDepth: boolean;
  /** One flag per bitmap of the export, in its order. */
  bitmaps: boolean[];
  count: number;
}

/** What a successful negotiation leaves for the transmission phase. */
export interface Negotiated {
  exp: NbdExport;
  structured: boolean;
  meta: MetaContexts;
}

/** The client is to be dropped; `message` says why (for the log), as QEMU words it. */
export class NegotiationFailed extends Error {}

const noMeta = (): MetaContexts => ({ exp: undefined, baseAllocation: false, allocationDepth: false, bitmaps: [], count: 0 });

/** Names longer than 80 characters are cut in error replies (nbd_sanitize_name). */
const sanitize = (name: string) => (name.length < 80 ? name : `${name.slice(0, 80)}...`);

const u32 = (n: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

/**
 * The fixed-newstyle handshake of nbd/server.c (nbd_negotiate and
 * nbd_negotiate_options), option by option with QEMU's replies, error
 * types and messages. `optlen` is what is left unread of the current
 * option, as QEMU tracks it: every reader checks against it, and every
 * error reply first drops the rest.
 */
export class Negotiation {
  private opt = 0;
  private optlen = 0;
  private structured = false;
  private meta: MetaContexts = noMeta();

  constructor(
    private readonly socket: Socket,
    private readonly reader: SocketReader,
    private readonly directory: ExportDirectory,
  ) {}

  /** Runs the handshake: the chosen export, or undefined when the client aborted. Throws NegotiationFailed to drop the client. */
  async run(): Promise<Negotiated | undefined> {
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(NBD_MAGIC, 0);
    greeting.writeBigUInt64BE(OPTS_MAGIC, 8);
    greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    this.socket.write(greeting);

    let flags = (await this.reader.read(4)).readUInt32BE(0);
    const fixed = (flags & FLAG_C_FIXED_NEWSTYLE) !== 0;
    const noZeroes = (flags & FLAG_C_NO_ZEROES) !== 0;
    flags &= ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    if (flags !== 0) throw new NegotiationFailed(`Unknown client flags 0x${flags.toString(16)} received`);

    for (;;) {
      const head = await this.reader.read(16);
      if (head.readBigUInt64BE(0) !== OPTS_MAGIC) throw new NegotiationFailed('Bad magic received');
      this.opt = head.readUInt32BE(8);
      this.optlen = head.readUInt32BE(12);
      if (this.optlen > MAX_BUFFER_SIZE) throw new NegotiationFailed(`len (${this.optlen} ) is larger than max len (${MAX_BUFFER_SIZE})`);
      if (!fixed) {
        // Old-style clients may only name their export.
        if (this.opt === OPT.EXPORT_NAME) return this.exportName(noZeroes);
        throw new NegotiationFailed(`Unsupported option ${this.opt} (${optName(this.opt)})`);
      }
      switch (this.opt) {
        case OPT.LIST:
          if (this.optlen) await this.rejectLength();
          else await this.list();
          break;
        case OPT.ABORT:
          // The spec asks for a reply, and lets the client hang up before reading it.
          this.reply(REP.ACK);
          return undefined;
        case OPT.EXPORT_NAME:
          return this.exportName(noZeroes);
        case OPT.INFO:
        case OPT.GO: {
          const chosen = await this.info();
          if (chosen) return chosen;
          break;
        }
        case OPT.STARTTLS:
          if (this.optlen) await this.rejectLength();
          else this.replyError(REP.ERR_POLICY, 'TLS not configured');
          break;
        case OPT.STRUCTURED_REPLY:
          if (this.optlen) await this.rejectLength();
          else if (this.structured) this.replyError(REP.ERR_INVALID, 'structured reply already negotiated');
          else {
            this.reply(REP.ACK);
            this.structured = true;
          }
          break;
        case OPT.LIST_META_CONTEXT:
        case OPT.SET_META_CONTEXT:
          await this.metaQueries();
          break;
        default:
          await this.drop(REP.ERR_UNSUP, `Unsupported option ${this.opt} (${optName(this.opt)})`);
      }
    }
  }

  // --- replies

  private reply(type: number, payload: Buffer[] = []): void {
    const len = payload.reduce((n, b) => n + b.length, 0);
    const h = Buffer.allocUnsafe(20);
    h.writeBigUInt64BE(REP_MAGIC, 0);
    h.writeUInt32BE(this.opt >>> 0, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(len, 16);
    this.socket.write(payload.length ? Buffer.concat([h, ...payload]) : h);
  }

  private replyError(type: number, message: string): void {
    this.reply(type, [Buffer.from(message, 'utf8')]);
  }

  /** nbd_opt_drop: the rest of the option is read and forgotten, then the error goes out. */
  private async drop(type: number, message: string): Promise<void> {
    await this.reader.skip(this.optlen);
    this.optlen = 0;
    this.replyError(type, message);
  }

  private invalid(message: string): Promise<void> {
    return this.drop(REP.ERR_INVALID, message);
  }

  private rejectLength(): Promise<void> {
    return this.invalid(`option '${optName(this.opt)}' has unexpected length`);
  }

  // --- reading the option's payload

  /** nbd_opt_read: `size` more bytes of the option, or undefined when they are not there (an error reply has gone out). */
  private async optRead(size: number, checkNul = false): Promise<Buffer | undefined> {
    if (size > this.optlen) {
      await this.invalid(`Inconsistent lengths in option ${optName(this.opt)}`);
      return undefined;
    }
    this.optlen -= size;
    const b = await this.reader.read(size);
    if (checkNul && b.includes(0)) {
      await this.invalid(`Unexpected embedded NUL in option ${optName(this.opt)}`);
      return undefined;
    }
    return b;
  }

  /** nbd_opt_read_name: a u32 length and that many bytes. */
  private async optReadName(): Promise<string | undefined> {
    const lenBuf = await this.optRead(4);
    if (!lenBuf) return undefined;
    const len = lenBuf.readUInt32BE(0);
    if (len > MAX_STRING_SIZE) {
      await this.invalid(`Invalid name length: ${len}`);
      return undefined;
    }
    const name = await this.optRead(len, true);
    return name?.toString('utf8');
  }

  // --- options

  private async list(): Promise<void> {
    for (const e of this.directory.list()) {
      const name = Buffer.from(e.name, 'utf8');
      this.reply(REP.SERVER, [u32(name.length), name, Buffer.from(e.spec.description ?? '', 'utf8')]);
    }
    this.reply(REP.ACK);
  }

  private transmissionFlags(exp: NbdExport): number {
    return exp.flags | (this.structured ? TF.SEND_DF : 0);
  }

  /** Meta contexts chosen for another export do not carry over (nbd_check_meta_export). */
  private chosen(exp: NbdExport): Negotiated {
    if (this.meta.exp !== exp) this.meta.count = 0;
    return { exp, structured: this.structured, meta: this.meta };
  }

  private async exportName(noZeroes: boolean): Promise<Negotiated> {
    if (this.optlen > MAX_STRING_SIZE) throw new NegotiationFailed('Bad length received');
    const name = (await this.reader.read(this.optlen)).toString('utf8');
    this.optlen = 0;
    const exp = this.directory.find(name);
    if (!exp) throw new NegotiationFailed('export not found');
    const out = Buffer.alloc(noZeroes ? 10 : 134);
    out.writeBigUInt64BE(BigInt(exp.size), 0);
    out.writeUInt16BE(this.transmissionFlags(exp), 8);
    this.socket.write(out);
    return this.chosen(exp);
  }

  /** NBD_OPT_INFO and NBD_OPT_GO: the export chosen (GO), or undefined to go on negotiating. */
  private async info(): Promise<Negotiated | undefined> {
    const name = await this.optReadName();
    if (name === undefined) return undefined;
    const countBuf = await this.optRead(2);
    if (!countBuf) return undefined;
    let sendName = false;
    let blockSize = false;
    for (let n = countBuf.readUInt16BE(0); n > 0; n--) {
      const r = await this.optRead(2);
      if (!r) return undefined;
      const req = r.readUInt16BE(0);
      if (req === INFO.NAME) sendName = true;
      else if (req === INFO.BLOCK_SIZE) blockSize = true;
    }
    if (this.optlen) {
      await this.rejectLength();
      return undefined;
    }
    const exp = this.directory.find(name);
    if (!exp) {
      this.replyError(REP.ERR_UNKNOWN, `export '${sanitize(name)}' not present`);
      return undefined;
    }
    const info = (type: number, body: Buffer) => {
      const t = Buffer.allocUnsafe(2);
      t.writeUInt16BE(type);
      this.reply(REP.INFO, [t, body]);
    };
    if (sendName) info(INFO.NAME, Buffer.from(name, 'utf8'));
    if (exp.spec.description !== undefined) info(INFO.DESCRIPTION, Buffer.from(exp.spec.description, 'utf8'));
    // The minimum is 1 for clients that would not honour more, unless they asked or this is INFO.
    const min = this.opt === OPT.INFO || blockSize ? exp.requestAlignment : 1;
    const sizes = Buffer.allocUnsafe(12);
    sizes.writeUInt32BE(min, 0);
    sizes.writeUInt32BE(Math.max(4096, min), 4);
    sizes.writeUInt32BE(Math.min(exp.maxTransfer, MAX_BUFFER_SIZE), 8);
    info(INFO.BLOCK_SIZE, sizes);
    const ex = Buffer.allocUnsafe(10);
    ex.writeBigUInt64BE(BigInt(exp.size), 0);
    ex.writeUInt16BE(this.transmissionFlags(exp), 8);
    info(INFO.EXPORT, ex);
    if (this.opt === OPT.INFO && !blockSize && exp.requestAlignment > 1) {
      this.replyError(REP.ERR_BLOCK_SIZE_REQD, 'request NBD_INFO_BLOCK_SIZE to use this export');
      return undefined;
    }
    this.reply(REP.ACK);
    return this.opt === OPT.GO ? this.chosen(exp) : undefined;
  }

  /** NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT (nbd_negotiate_meta_queries). */
  private async metaQueries(): Promise<void> {
    const listing = this.opt === OPT.LIST_META_CONTEXT;
    if (!listing && !this.structured) {
      await this.invalid(`request option '${optName(this.opt)}' when structured reply is not negotiated`);
      return;
    }
    // SET replaces the selection (even when it then fails); LIST works on a scratch copy.
    const meta = noMeta();
    if (!listing) this.meta = meta;
    const name = await this.optReadName();
    if (name === undefined) return;
    const exp = this.directory.find(name);
    if (!exp) {
      await this.drop(REP.ERR_UNKNOWN, `export '${sanitize(name)}' not present`);
      return;
    }
    meta.exp = exp;
    meta.bitmaps = exp.spec.bitmaps.map(() => false);
    const nBuf = await this.optRead(4);
    if (!nBuf) return;
    const queries = nBuf.readUInt32BE(0);
    const all = () => {
      meta.allocationDepth = exp.spec.allocationDepth;
      meta.bitmaps.fill(true);
    };
    if (listing && queries === 0) {
      meta.baseAllocation = true;
      all();
    } else {
      for (let i = 0; i < queries; i++) {
        const lenBuf = await this.optRead(4);
        if (!lenBuf) return;
        const len = lenBuf.readUInt32BE(0);
        if (len > MAX_STRING_SIZE) {
          // Too long to be a context we know: skipped, as QEMU skips it.
          if (len > this.optlen) return void (await this.invalid(`Inconsistent lengths in option ${optName(this.opt)}`));
          this.optlen -= len;
          await this.reader.skip(len);
          continue;
        }
        const q = await this.optRead(len, true);
        if (!q) return;
        this.metaQuery(meta, q.toString('utf8'), listing);
      }
    }
    // QEMU asserts (and dies) on bytes left over here; a clean refusal is kinder.
    if (this.optlen) return this.rejectLength();
    const send = (ctx: string, id: number) => this.reply(REP.META_CONTEXT, [u32(listing ? 0 : id), Buffer.from(ctx, 'utf8')]);
    let count = 0;
    if (meta.baseAllocation) {
      send('base:allocation', META_ID.BASE_ALLOCATION);
      count++;
    }
    if (meta.allocationDepth) {
      send('qemu:allocation-depth', META_ID.ALLOCATION_DEPTH);
      count++;
    }
    exp.spec.bitmaps.forEach((b, i) => {
      if (!meta.bitmaps[i]) return;
      send(`qemu:dirty-bitmap:${b.name ?? ''}`, META_ID.DIRTY_BITMAP + i);
      count++;
    });
    this.reply(REP.ACK);
    meta.count = count;
  }

  /** One query of the 'base:' or 'qemu:' namespace; others select nothing. An empty leaf selects all, only when listing. */
  private metaQuery(meta: MetaContexts, query: string, listing: boolean): void {
    const exp = meta.exp!;
    if (query.startsWith('base:')) {
      const rest = query.slice(5);
      if (rest === 'allocation' || (rest === '' && listing)) meta.baseAllocation = true;
      return;
    }
    if (!query.startsWith('qemu:')) return;
    const rest = query.slice(5);
    if (rest === '') {
      if (listing) {
        meta.allocationDepth = exp.spec.allocationDepth;
        meta.bitmaps.fill(true);
      }
    } else if (rest === 'allocation-depth') {
      meta.allocationDepth = exp.spec.allocationDepth;
    } else if (rest.startsWith('dirty-bitmap:')) {
      const bm = rest.slice('dirty-bitmap:'.length);
      if (bm === '') {
        if (listing) meta.bitmaps.fill(true);
        return;
      }
      const i = exp.spec.bitmaps.findIndex((b) => b.name === bm);
      if (i >= 0) meta.bitmaps[i] = true;
    }
  }
}
