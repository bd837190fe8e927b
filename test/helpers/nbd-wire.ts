/**
 * A raw NBD protocol client for wire-level tests: it scripts a session
 * byte by byte (including deliberately malformed messages) against a
 * server on a Unix socket, and keeps a transcript of every step as
 * JSON-friendly records, so that two servers' transcripts can be compared
 * whole with `toEqual`.
 *
 * Each step reads exactly the bytes the protocol says come next. A
 * connection the server closed, or a reply that does not come in time,
 * ends the session: that is recorded once (`closed` / `timeout`, with any
 * partial bytes), and every later step is a no-op, so two transcripts stay
 * comparable record by record.
 */
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type WireRecord = { [key: string]: Json };

export const NBD = {
  NBDMAGIC: 0x4e42444d41474943n,
  OPTS_MAGIC: 0x49484156454f5054n,
  REP_MAGIC: 0x0003e889045565a9n,
  REQUEST_MAGIC: 0x25609513,
  SIMPLE_REPLY_MAGIC: 0x67446698,
  STRUCTURED_REPLY_MAGIC: 0x668e33ef,

  FLAG_C_FIXED_NEWSTYLE: 1,
  FLAG_C_NO_ZEROES: 2,

  OPT_EXPORT_NAME: 1,
  OPT_ABORT: 2,
  OPT_LIST: 3,
  OPT_STARTTLS: 5,
  OPT_INFO: 6,
  OPT_GO: 7,
  OPT_STRUCTURED_REPLY: 8,
  OPT_LIST_META_CONTEXT: 9,
  OPT_SET_META_CONTEXT: 10,

  REP_ACK: 1,
  REP_SERVER: 2,
  REP_INFO: 3,
  REP_META_CONTEXT: 4,

  INFO_EXPORT: 0,
  INFO_NAME: 1,
  INFO_DESCRIPTION: 2,
  INFO_BLOCK_SIZE: 3,

  CMD_READ: 0,
  CMD_WRITE: 1,
  CMD_DISC: 2,
  CMD_FLUSH: 3,
  CMD_TRIM: 4,
  CMD_CACHE: 5,
  CMD_WRITE_ZEROES: 6,
  CMD_BLOCK_STATUS: 7,

  CMD_FLAG_FUA: 1,
  CMD_FLAG_NO_HOLE: 2,
  CMD_FLAG_DF: 4,
  CMD_FLAG_REQ_ONE: 8,
  CMD_FLAG_FAST_ZERO: 16,

  REPLY_FLAG_DONE: 1,
  REPLY_TYPE_NONE: 0,
  REPLY_TYPE_OFFSET_DATA: 1,
  REPLY_TYPE_OFFSET_HOLE: 2,
  REPLY_TYPE_BLOCK_STATUS: 5,
  REPLY_TYPE_ERROR: 0x8001,
  REPLY_TYPE_ERROR_OFFSET: 0x8002,

  MAX_BUFFER_SIZE: 32 * 1024 * 1024,
} as const;

const OPT_NAMES: Record<number, string> = {
  1: 'EXPORT_NAME',
  2: 'ABORT',
  3: 'LIST',
  5: 'STARTTLS',
  6: 'INFO',
  7: 'GO',
  8: 'STRUCTURED_REPLY',
  9: 'LIST_META_CONTEXT',
  10: 'SET_META_CONTEXT',
};
const REP_NAMES: Record<number, string> = {
  1: 'ACK',
  2: 'SERVER',
  3: 'INFO',
  4: 'META_CONTEXT',
  [0x80000001]: 'ERR_UNSUP',
  [0x80000002]: 'ERR_POLICY',
  [0x80000003]: 'ERR_INVALID',
  [0x80000004]: 'ERR_PLATFORM',
  [0x80000005]: 'ERR_TLS_REQD',
  [0x80000006]: 'ERR_UNKNOWN',
  [0x80000007]: 'ERR_SHUTDOWN',
  [0x80000008]: 'ERR_BLOCK_SIZE_REQD',
};
const INFO_NAMES: Record<number, string> = { 0: 'EXPORT', 1: 'NAME', 2: 'DESCRIPTION', 3: 'BLOCK_SIZE' };
const CMD_NAMES: Record<number, string> = {
  0: 'READ',
  1: 'WRITE',
  2: 'DISC',
  3: 'FLUSH',
  4: 'TRIM',
  5: 'CACHE',
  6: 'WRITE_ZEROES',
  7: 'BLOCK_STATUS',
};
const CHUNK_NAMES: Record<number, string> = {
  0: 'NONE',
  1: 'OFFSET_DATA',
  2: 'OFFSET_HOLE',
  5: 'BLOCK_STATUS',
  0x8001: 'ERROR',
  0x8002: 'ERROR_OFFSET',
};
const TX_FLAG_NAMES: [number, string][] = [
  [1, 'HAS_FLAGS'],
  [2, 'READ_ONLY'],
  [4, 'SEND_FLUSH'],
  [8, 'SEND_FUA'],
  [16, 'ROTATIONAL'],
  [32, 'SEND_TRIM'],
  [64, 'SEND_WRITE_ZEROES'],
  [128, 'SEND_DF'],
  [256, 'CAN_MULTI_CONN'],
  [512, 'SEND_RESIZE'],
  [1024, 'SEND_CACHE'],
  [2048, 'SEND_FAST_ZERO'],
];
const ERRNO_NAMES: Record<number, string> = {
  0: 'OK',
  1: 'EPERM',
  5: 'EIO',
  12: 'ENOMEM',
  22: 'EINVAL',
  28: 'ENOSPC',
  75: 'EOVERFLOW',
  95: 'ENOTSUP',
  108: 'ESHUTDOWN',
};

const name = (table: Record<number, string>, v: number): string => table[v] ?? `unknown(${v})`;
const hex = (b: Buffer): string => b.toString('hex');
const hex32 = (v: number): string => `0x${v.toString(16).padStart(8, '0')}`;
const hex64 = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;

/** A u64 as a number when it is exact, else as hex. */
function u64(b: Buffer, off: number): number | string {
  const v = b.readBigUInt64BE(off);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : hex64(v);
}

/** The names of the transmission flags set in `flags` (unknown bits as numbers). */
export function txFlagNames(flags: number): string[] {
  const names = TX_FLAG_NAMES.filter(([bit]) => flags & bit).map(([, n]) => n);
  const unknown = flags & ~TX_FLAG_NAMES.reduce((a, [bit]) => a | bit, 0);
  if (unknown) names.push(`unknown(0x${unknown.toString(16)})`);
  return names;
}

/**
 * Bytes as a record: short ones as hex; long ones as length, sha256 and
 * a run-length sketch (up to 8 runs, e.g. `11*65536`) for reading diffs.
 */
export function dataSummary(b: Buffer): WireRecord {
  if (b.length <= 32) return { length: b.length, hex: hex(b) };
  const runs: string[] = [];
  let i = 0;
  while (i < b.length && runs.length < 8) {
    let j = i + 1;
    while (j < b.length && b[j] === b[i]) j++;
    runs.push(`${b[i]!.toString(16).padStart(2, '0')}*${j - i}`);
    i = j;
  }
  if (i < b.length) runs.push('...');
  return { length: b.length, sha256: createHash('sha256').update(b).digest('hex'), runs };
}

/** Text as a string when it is printable UTF-8, else as hex. */
function text(b: Buffer): string {
  const s = b.toString('utf8');
  return Buffer.from(s, 'utf8').equals(b) && !/[\x00-\x1f\x7f]/.test(s) ? s : `hex:${hex(b)}`;
}

// ---- payload builders ---------------------------------------------------

const u16b = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const u32b = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
const str32 = (s: string | Buffer): Buffer => {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  return Buffer.concat([u32b(b.length), b]);
};

/** NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 N, N × u16 info requests. */
export function infoPayload(exportName: string | Buffer, requests: number[] = []): Buffer {
  return Buffer.concat([str32(exportName), u16b(requests.length), ...requests.map(u16b)]);
}

/** NBD_OPT_{LIST,SET}_META_CONTEXT data: u32 name length, name, u32 N, N × (u32 length, query). */
export function metaPayload(exportName: string, queries: (string | Buffer)[] = []): Buffer {
  return Buffer.concat([str32(exportName), u32b(queries.length), ...queries.map(str32)]);
}

export { u16b, u32b, str32 };

// ---- the client ---------------------------------------------------------

type Take = { ok: true; buf: Buffer } | { ok: false; reason: 'closed' | 'timeout'; partial: Buffer };

export interface OptionOpts {
  /** The option magic to send (default IHAVEOPT). */
  magic?: bigint;
  /** The length to claim in the header (default: the payload's length). */
  length?: number;
}

export interface RequestOpts {
  flags?: number;
  /** Default: a per-session counter starting at 1. */
  cookie?: bigint;
  offset?: number;
  /** Default: the data's length (or 0). */
  length?: number;
  /** WRITE payload (sent after the header). */
  data?: Buffer;
  /** The request magic to send (default 0x25609513). */
  magic?: number;
}

export interface WireOpts {
  /** How long a reply may take before the session is declared hung (ms). */
  timeoutMs?: number;
}

export class NbdWire {
  readonly transcript: WireRecord[] = [];
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  /** Set once the session is over (closed, timed out or out of sync): later steps are no-ops. */
  private dead = false;
  private wake: (() => void) | undefined;
  private nextCookie = 1n;
  private readonly timeoutMs: number;

  private constructor(
    private readonly socket: Socket,
    opts: WireOpts,
  ) {
    this.timeoutMs = opts.timeoutMs ?? 3000;
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buffered += d.length;
      this.wake?.();
    });
    const end = () => {
      this.ended = true;
      this.wake?.();
    };
    socket.on('end', end);
    socket.on('close', end);
    // EPIPE / ECONNRESET after the server hung up: the same as an end.
    socket.on('error', end);
  }

  /** Connects to a Unix socket, retrying (up to `waitMs`) while it does not exist or accept yet. */
  static async connect(path: string, opts: WireOpts & { waitMs?: number } = {}): Promise<NbdWire> {
    const deadline = Date.now() + (opts.waitMs ?? 10_000);
    for (;;) {
      const sock = await new Promise<Socket | Error>((resolve) => {
        const s = connect(path);
        s.once('connect', () => {
          s.removeAllListeners('error');
          resolve(s);
        });
        s.once('error', (e) => resolve(e));
      });
      if (!(sock instanceof Error)) return new NbdWire(sock, opts);
      if (Date.now() > deadline) throw new Error(`cannot connect to NBD socket ${path}: ${sock.message}`);
      await sleep(25);
    }
  }

  /** Whether the session has ended (closed, timed out or out of sync). */
  get over(): boolean {
    return this.dead;
  }

  private record(r: WireRecord): void {
    this.transcript.push(r);
  }

  private endSession(r: WireRecord): void {
    this.record(r);
    this.dead = true;
  }

  private takeBuffered(n: number): Buffer {
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.buffered = all.length - Math.min(n, all.length);
    return all.subarray(0, Math.min(n, all.length));
  }

  /** Waits until `n` bytes are buffered, the connection ends, or the time is up. */
  private async waitFor(n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered < n && !this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.wake = undefined;
          resolve();
        }, left);
        this.wake = () => {
          clearTimeout(t);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  private async take(n: number): Promise<Take> {
    await this.waitFor(n, this.timeoutMs);
    if (this.buffered >= n) return { ok: true, buf: this.takeBuffered(n) };
    const partial = this.takeBuffered(this.buffered);
    return { ok: false, reason: this.ended ? 'closed' : 'timeout', partial };
  }

  /** Reads exactly n bytes; on failure records `closed`/`timeout` (while doing `what`) and ends the session. */
  private async read(n: number, what: string): Promise<Buffer | undefined> {
    if (n === 0) return Buffer.alloc(0);
    const r = await this.take(n);
    if (r.ok) return r.buf;
    const rec: WireRecord = { step: r.reason, while: what };
    if (r.partial.length > 0) rec['partial'] = dataSummary(r.partial);
    this.endSession(rec);
    return undefined;
  }

  private send(b: Buffer): void {
    if (this.ended) return;
    this.socket.write(b);
  }

  // ---- handshake ----

  /** Reads the 18-byte server greeting. */
  async greeting(): Promise<void> {
    if (this.dead) return;
    const b = await this.read(18, 'greeting');
    if (!b) return;
    this.record({
      step: 'greeting',
      passwd: text(b.subarray(0, 8)),
      magic: hex64(b.readBigUInt64BE(8)),
      handshakeFlags: b.readUInt16BE(16),
    });
  }

  /** Sends the u32 client flags. */
  clientFlags(flags: number): void {
    if (this.dead) return;
    this.record({ step: 'send-client-flags', flags: hex32(flags) });
    this.send(u32b(flags));
  }

  /** Sends one option: magic, option number, length, payload (the length and magic may be wrong on purpose). */
  option(option: number, payload: Buffer = Buffer.alloc(0), opts: OptionOpts = {}): void {
    if (this.dead) return;
    const magic = opts.magic ?? NBD.OPTS_MAGIC;
    const length = opts.length ?? payload.length;
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(magic, 0);
    h.writeUInt32BE(option >>> 0, 8);
    h.writeUInt32BE(length >>> 0, 12);
    const rec: WireRecord = { step: 'send-option', option, name: name(OPT_NAMES, option), length };
    if (magic !== NBD.OPTS_MAGIC) rec['magic'] = hex64(magic);
    if (payload.length !== length) rec['payload'] = dataSummary(payload);
    else if (payload.length > 0) rec['payload'] = payload.length <= 64 ? hex(payload) : dataSummary(payload);
    this.record(rec);
    this.send(Buffer.concat([h, payload]));
  }

  /** Reads option replies up to and including the first ACK or error reply. */
  async optionReplies(): Promise<void> {
    while (!this.dead) {
      const h = await this.read(20, 'option reply header');
      if (!h) return;
      const magic = h.readBigUInt64BE(0);
      const option = h.readUInt32BE(8);
      const type = h.readUInt32BE(12);
      const length = h.readUInt32BE(16);
      const rec: WireRecord = { step: 'option-reply', option, type: name(REP_NAMES, type), length };
      if (magic !== NBD.REP_MAGIC) {
        rec['magic'] = hex64(magic);
        rec['header'] = hex(h);
        this.endSession({ ...rec, step: 'bad-option-reply-magic' });
        return;
      }
      if (length > NBD.MAX_BUFFER_SIZE) {
        this.endSession({ ...rec, step: 'option-reply-too-long' });
        return;
      }
      const data = await this.read(length, 'option reply data');
      if (!data) return;
      Object.assign(rec, decodeOptionReply(type, data));
      this.record(rec);
      if (type === NBD.REP_ACK || type & 0x80000000) return;
    }
  }

  /** Reads the reply to NBD_OPT_EXPORT_NAME: u64 size, u16 flags, then 124 zero bytes unless NO_ZEROES was sent. */
  async exportNameReply(noZeroes: boolean): Promise<void> {
    if (this.dead) return;
    const b = await this.read(10, 'export name reply');
    if (!b) return;
    const flags = b.readUInt16BE(8);
    const rec: WireRecord = { step: 'export-name-reply', size: u64(b, 0), flags, flagNames: txFlagNames(flags) };
    if (!noZeroes) {
      const z = await this.read(124, 'export name reply padding');
      if (!z) return;
      rec['padding'] = z.every((x) => x === 0) ? 'zeroes*124' : dataSummary(z);
    }
    this.record(rec);
  }

  // ---- transmission ----

  /** Sends one request (header, then `data` if given). Returns the cookie used. */
  request(type: number, opts: RequestOpts = {}): bigint {
    const cookie = opts.cookie ?? this.nextCookie++;
    if (this.dead) return cookie;
    const length = opts.length ?? opts.data?.length ?? 0;
    const h = Buffer.alloc(28);
    h.writeUInt32BE((opts.magic ?? NBD.REQUEST_MAGIC) >>> 0, 0);
    h.writeUInt16BE(opts.flags ?? 0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(opts.offset ?? 0), 16);
    h.writeUInt32BE(length >>> 0, 24);
    const rec: WireRecord = {
      step: 'send-request',
      type: name(CMD_NAMES, type),
      flags: opts.flags ?? 0,
      cookie: hex64(cookie),
      offset: opts.offset ?? 0,
      length,
    };
    if (opts.magic !== undefined) rec['magic'] = hex32(opts.magic);
    if (opts.data) rec['data'] = dataSummary(opts.data);
    this.record(rec);
    this.send(opts.data ? Buffer.concat([h, opts.data]) : h);
    return cookie;
  }

  /**
   * Reads until one reply is complete: a simple reply, or structured
   * chunks until one has DONE (told apart by their magic). A simple reply
   * with error 0 is followed by `readLength` data bytes (pass the length of
   * a READ). With requests pipelined, the chunks read may belong to
   * several requests; each call still consumes exactly one completion.
   */
  async reply(opts: { readLength?: number } = {}): Promise<void> {
    if (this.dead) return;
    let first = true;
    while (!this.dead) {
      const m = await this.read(4, first ? 'reply magic' : 'next chunk magic');
      if (!m) return;
      const magic = m.readUInt32BE(0);
      // A simple reply may also come between another request's chunks (the server may interleave replies): it completes its own request.
      if (magic === NBD.SIMPLE_REPLY_MAGIC) {
        const h = await this.read(12, 'simple reply header');
        if (!h) return;
        const error = h.readUInt32BE(0);
        const rec: WireRecord = { step: 'simple-reply', error: name(ERRNO_NAMES, error), cookie: hex64(h.readBigUInt64BE(4)) };
        if (error === 0 && (opts.readLength ?? 0) > 0) {
          const data = await this.read(opts.readLength ?? 0, 'simple reply data');
          if (!data) return;
          rec['data'] = dataSummary(data);
        }
        this.record(rec);
        return;
      }
      if (magic !== NBD.STRUCTURED_REPLY_MAGIC) {
        const rest = await this.take(16);
        this.endSession({
          step: 'bad-reply-magic',
          magic: hex32(magic),
          following: dataSummary(rest.ok ? rest.buf : rest.partial),
        });
        return;
      }
      first = false;
      const h = await this.read(16, 'structured chunk header');
      if (!h) return;
      const flags = h.readUInt16BE(0);
      const type = h.readUInt16BE(2);
      const length = h.readUInt32BE(12);
      const rec: WireRecord = {
        step: 'chunk',
        flags,
        type: name(CHUNK_NAMES, type),
        cookie: hex64(h.readBigUInt64BE(4)),
        length,
      };
      if (length > NBD.MAX_BUFFER_SIZE + 64) {
        this.endSession({ ...rec, step: 'chunk-too-long' });
        return;
      }
      const payload = await this.read(length, 'structured chunk payload');
      if (!payload) return;
      Object.assign(rec, decodeChunk(type, payload));
      this.record(rec);
      if (flags & NBD.REPLY_FLAG_DONE) return;
    }
  }

  /**
   * Expects the server to hang up (after a fatal error or DISC): records
   * `closed`, or any bytes that came instead, or `still-open` if the
   * connection is still up after `timeoutMs`.
   */
  async expectClosed(timeoutMs = 2000): Promise<void> {
    if (this.dead) return;
    await this.waitFor(Number.MAX_SAFE_INTEGER, timeoutMs);
    if (this.buffered > 0) this.record({ step: 'unexpected-data', data: dataSummary(this.takeBuffered(this.buffered)) });
    this.endSession({ step: this.ended ? 'closed' : 'still-open' });
  }

  /** Closes our side (no record). */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.destroy();
    });
  }
}

// ---- decoders -----------------------------------------------------------

function decodeOptionReply(type: number, d: Buffer): WireRecord {
  if (type & 0x80000000) return d.length > 0 ? { message: text(d) } : {};
  switch (type) {
    case NBD.REP_ACK:
      return d.length > 0 ? { raw: dataSummary(d) } : {};
    case NBD.REP_SERVER: {
      if (d.length < 4) break;
      const n = d.readUInt32BE(0);
      if (4 + n > d.length) break;
      return { exportName: text(d.subarray(4, 4 + n)), description: text(d.subarray(4 + n)) };
    }
    case NBD.REP_INFO: {
      if (d.length < 2) break;
      const info = d.readUInt16BE(0);
      const body = d.subarray(2);
      const rec: WireRecord = { info: name(INFO_NAMES, info) };
      if (info === NBD.INFO_EXPORT && body.length === 10) {
        const flags = body.readUInt16BE(8);
        return { ...rec, size: u64(body, 0), flags, flagNames: txFlagNames(flags) };
      }
      if (info === NBD.INFO_BLOCK_SIZE && body.length === 12) {
        return { ...rec, minimum: body.readUInt32BE(0), preferred: body.readUInt32BE(4), maximum: body.readUInt32BE(8) };
      }
      if (info === NBD.INFO_NAME || info === NBD.INFO_DESCRIPTION) return { ...rec, text: text(body) };
      return { ...rec, raw: dataSummary(body) };
    }
    case NBD.REP_META_CONTEXT:
      if (d.length < 4) break;
      return { contextId: d.readUInt32BE(0), context: text(d.subarray(4)) };
  }
  return { malformed: dataSummary(d) };
}

function decodeChunk(type: number, d: Buffer): WireRecord {
  switch (type) {
    case NBD.REPLY_TYPE_NONE:
      return d.length > 0 ? { raw: dataSummary(d) } : {};
    case NBD.REPLY_TYPE_OFFSET_DATA:
      if (d.length < 8) break;
      return { offset: u64(d, 0), data: dataSummary(d.subarray(8)) };
    case NBD.REPLY_TYPE_OFFSET_HOLE:
      if (d.length !== 12) break;
      return { offset: u64(d, 0), holeLength: d.readUInt32BE(8) };
    case NBD.REPLY_TYPE_BLOCK_STATUS: {
      if (d.length < 4 || (d.length - 4) % 8 !== 0) break;
      const extents: Json[] = [];
      for (let o = 4; o < d.length; o += 8) extents.push([d.readUInt32BE(o), d.readUInt32BE(o + 4)]);
      return { contextId: d.readUInt32BE(0), extents };
    }
    case NBD.REPLY_TYPE_ERROR:
    case NBD.REPLY_TYPE_ERROR_OFFSET: {
      if (d.length < 6) break;
      const error = d.readUInt32BE(0);
      const n = d.readUInt16BE(4);
      const tail = type === NBD.REPLY_TYPE_ERROR_OFFSET ? 8 : 0;
      if (6 + n + tail !== d.length) break;
      const rec: WireRecord = { error: name(ERRNO_NAMES, error), message: text(d.subarray(6, 6 + n)) };
      if (tail) rec['offset'] = u64(d, 6 + n);
      return rec;
    }
  }
  return { malformed: dataSummary(d) };
}
