import { BlockError } from '../../image/errors.js';
import { checkRequest } from '../../image/request.js';
import type { Extent, Preallocation } from '../../image/types.js';
import type { ServerAddress } from '../../nbd/client-connect.js';
import { ClientConnection } from '../../nbd/client-connection.js';
import type { ExportInfo } from '../../nbd/client-handshake.js';
import { CMD, CMD_FLAG, MAX_BUFFER_SIZE, MAX_STRING_SIZE, STATE_HOLE, STATE_ZERO, TF } from '../../nbd/protocol.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type WriteFlags, type ZeroFlags } from '../node.js';
import type { ReopenState, StagedReopen } from '../reopen-driver.js';
import { alignedPieces, Rmw } from './nbd-align.js';

/** The driver's options once validated (BlockdevOptionsNbd). */
export interface NbdOptions {
  server: ServerAddress;
  export?: string;
  xDirtyBitmap?: string;
  reconnectDelay: number;
  openTimeout: number;
  readOnly: boolean;
  autoReadOnly: boolean;
}

/** INT_MAX: the longest discard or block status request block/nbd.c sends, before alignment. */
const INT_MAX = 2 ** 31 - 1;

/**
 * nbd_refresh_filename: `nbd+unix:///EXPORT?socket=PATH` or
 * `nbd://HOST:PORT/EXPORT` ('' — a json: name — for an inet address
 * with options the name cannot carry, ipv4 and the like).
 */
export function nbdFilename(server: ServerAddress & Record<string, unknown>, exportName: string | undefined): string {
  const exp = exportName === undefined ? '' : `/${exportName}`;
  if (server.type === 'unix') return exportName === undefined ? `nbd+unix://?socket=${server.path}` : `nbd+unix:///${exportName}?socket=${server.path}`;
  if (server['ipv4'] !== undefined || server['ipv6'] !== undefined || server['to'] !== undefined) return '';
  const name = `nbd://${server.host}:${server.port}${exp}`;
  return Buffer.byteLength(name) >= 4096 ? '' : name;
}

/** A protocol node named by its URI; the address options, export and TLS make another node (nbd_strong_runtime_opts). */
const NBD_NAMING: NamePolicy = {
  protocol: true,
  strong: ['path', 'host', 'port', 'export', 'tls-creds', 'tls-hostname', 'server.'],
  exactName: (node) => (node instanceof NbdNode ? node.exactFilename : undefined),
};

/**
 * The `nbd` protocol driver (block/nbd.c): a node whose bytes are an
 * export of an NBD server. Requests become NBD commands, cut to the
 * server's block sizes; block status asks base:allocation (or the
 * x-dirty-bitmap context) so formats and jobs above see holes; the
 * connection survives losses as ClientConnection keeps it.
 */
export class NbdNode extends BlockNode {
  readonly driver = 'nbd';
  private readonly rmw = new Rmw();

  private constructor(
    name: string,
    readOnly: boolean,
    private readonly conn: ClientConnection,
    private readonly opts: NbdOptions,
  ) {
    super(name, readOnly);
  }

  /**
   * nbd_open: connects (with open-timeout's retries) and checks what the
   * server offers (nbd_handle_updated_info): a missing x-dirty-bitmap and
   * a read-only export under a read-write node without auto-read-only are
   * refused as QEMU refuses them, with no message of their own.
   */
  static async open(name: string, o: NbdOptions): Promise<NbdNode> {
    if (o.server.type !== 'unix' && o.server.type !== 'inet') throw unsupportedAddress(o.server);
    // nbd_process_options: what the handshake could not send.
    if (o.export !== undefined && Buffer.byteLength(o.export) > MAX_STRING_SIZE) throw new BlockError('INVALID_ARGUMENT', 'export name too long to send to server');
    if (o.xDirtyBitmap !== undefined && Buffer.byteLength(o.xDirtyBitmap) > MAX_STRING_SIZE) throw new BlockError('INVALID_ARGUMENT', 'x-dirty-bitmap query too long to send to server');
    let readOnly = o.readOnly;
    const conn = await ClientConnection.open({
      address: o.server,
      exportName: o.export ?? '',
      metaContext: o.xDirtyBitmap,
      reconnectDelay: o.reconnectDelay,
      openTimeout: o.openTimeout,
      accept: (info) => {
        if (o.xDirtyBitmap !== undefined && !info.baseAllocation) throw new BlockError('INVALID_ARGUMENT', 'Could not open image: Invalid argument', { errno: 'EINVAL' });
        if (info.flags & TF.READ_ONLY && !readOnly) {
          // bdrv_apply_auto_read_only("NBD export is read-only").
          if (!o.autoReadOnly) throw new BlockError('READ_ONLY', 'Could not open image: Permission denied', { errno: 'EACCES' });
          readOnly = true;
        }
      },
    });
    return new NbdNode(name, readOnly, conn, o);
  }

  private get info(): ExportInfo {
    return this.conn.info;
  }

  /** The name opening would recreate the node from (filename.ts asks through NBD_NAMING). */
  get exactFilename(): string {
    return nbdFilename(this.opts.server as ServerAddress & Record<string, unknown>, this.opts.export);
  }

  override get namePolicy(): NamePolicy {
    return NBD_NAMING;
  }

  size(): number {
    return this.info.size;
  }

  /**
   * nbd_refresh_limits: the server's minimum block; without one, 1 where
   * block status or an unaligned size needs byte granularity, else a
   * sector (an old server is safer so).
   */
  override requestAlignment(): number {
    const i = this.info;
    if (i.minBlock) return i.minBlock;
    return i.size % 512 !== 0 || i.baseAllocation ? 1 : 512;
  }

  /** Largest READ/WRITE/WRITE_ZEROES payload: the server's maximum block, at most NBD_MAX_BUFFER_SIZE. */
  private maxTransfer(): number {
    const max = this.info.maxBlock ? Math.min(MAX_BUFFER_SIZE, this.info.maxBlock) : MAX_BUFFER_SIZE;
    const align = this.requestAlignment();
    return max - (max % align);
  }

  /** A server with SEND_FUA makes FUA writes stable itself (supported_write_flags); the block layer flushes after the others. */
  protected override get supportsFua(): boolean {
    return this.has(TF.SEND_FUA);
  }

  private has(flag: number): boolean {
    return (this.info.flags & flag) !== 0;
  }

  protected async doRead(offset: number, length: number): Promise<Uint8Array> {
    checkRequest('read', offset, length, this.size());
    const out = Buffer.allocUnsafe(length);
    await this.readAligned(out, offset);
    return out;
  }

  protected override async doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    checkRequest('read', offset, buf.length, this.size());
    await this.readAligned(buf, offset);
  }

  /** Reads widened to the request alignment, the pieces sent together. */
  private async readAligned(buf: Uint8Array, offset: number): Promise<void> {
    const align = this.requestAlignment();
    const start = offset - (offset % align);
    const end = Math.min(this.size(), Math.ceil((offset + buf.length) / align) * align);
    if (start === offset && end === offset + buf.length) return this.readPieces(buf, offset);
    const wide = Buffer.allocUnsafe(end - start);
    await this.readPieces(wide, start);
    buf.set(wide.subarray(offset - start, offset - start + buf.length));
  }

  private async readPieces(buf: Uint8Array, offset: number): Promise<void> {
    const max = this.maxTransfer();
    const parts: Promise<unknown>[] = [];
    for (let at = 0; at < buf.length; at += max) {
      const len = Math.min(max, buf.length - at);
      parts.push(this.conn.request(CMD.READ, 0, offset + at, len, undefined, buf.subarray(at, at + len)));
    }
    await settleAll(parts);
  }

  protected async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    checkRequest('write', offset, data.length, this.size());
    await this.rmw.write(offset, data, this.requestAlignment(), (o, l) => this.doRead(o, l), (o, d) => this.sendWrites(o, d, flags));
  }

  /** WRITE in pieces of the server's maximum; FUA comes only where the server takes it (supportsFua: the block layer emulates it otherwise). */
  private async sendWrites(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    const fua = flags.fua === true;
    const max = this.maxTransfer();
    const parts: Promise<unknown>[] = [];
    for (let at = 0; at < data.length; at += max) {
      const len = Math.min(max, data.length - at);
      parts.push(this.conn.request(CMD.WRITE, fua ? CMD_FLAG.FUA : 0, offset + at, len, data.subarray(at, at + len)));
    }
    await settleAll(parts);
  }

  /**
   * WRITE_ZEROES with NO_HOLE unless the caller may unmap, FAST_ZERO for
   * noFallback; a server without WRITE_ZEROES gets zero buffers instead
   * (unless noFallback: then ENOTSUP, as QEMU's fallback rules).
   */
  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    checkRequest('write zeroes', offset, length, this.size());
    const canZero = this.has(TF.SEND_WRITE_ZEROES);
    if (flags.noFallback && !(canZero && this.has(TF.SEND_FAST_ZERO))) throw new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' });
    const align = this.requestAlignment();
    const { head, body, tail } = alignedPieces(offset, length, align);
    const zeroBuf = (o: number, l: number) => this.doWrite(o, new Uint8Array(l), { fua: flags.fua });
    const parts: Promise<unknown>[] = [];
    if (head) parts.push(zeroBuf(head.offset, head.length));
    if (tail) parts.push(zeroBuf(tail.offset, tail.length));
    if (body && !canZero) {
      // One zero buffer of at most a transfer, written piece after piece: a large range must not become as many buffers at once.
      const max = this.maxTransfer();
      const zeroes = new Uint8Array(Math.min(max, body.length));
      parts.push(
        (async () => {
          for (let at = body.offset; at < body.offset + body.length; at += max) {
            await this.doWrite(at, zeroes.subarray(0, Math.min(max, body.offset + body.length - at)), { fua: flags.fua });
          }
        })(),
      );
    } else if (body) {
      let f = flags.mayUnmap ? 0 : CMD_FLAG.NO_HOLE;
      if (flags.noFallback) f |= CMD_FLAG.FAST_ZERO;
      if (flags.fua) f |= CMD_FLAG.FUA;
      const max = this.maxTransfer();
      for (let at = body.offset; at < body.offset + body.length; at += max) {
        parts.push(this.conn.request(CMD.WRITE_ZEROES, f, at, Math.min(max, body.offset + body.length - at)));
      }
    }
    await settleAll(parts);
  }

  /** TRIM of the aligned part, in pieces below 2 GiB; nothing where the server cannot trim (a discard is a hint). */
  protected async doDiscard(offset: number, length: number): Promise<void> {
    checkRequest('discard', offset, length, this.size());
    if (!this.has(TF.SEND_TRIM)) return;
    const align = this.requestAlignment();
    const body = alignedPieces(offset, length, align).body;
    if (!body) return;
    const max = INT_MAX - (INT_MAX % align);
    const parts: Promise<unknown>[] = [];
    for (let at = body.offset; at < body.offset + body.length; at += max) parts.push(this.conn.request(CMD.TRIM, 0, at, Math.min(max, body.offset + body.length - at)));
    await settleAll(parts);
  }

  /** NBD_CMD_FLUSH, when the server has a cache to flush (SEND_FLUSH). */
  protected async doFlush(): Promise<void> {
    if (this.has(TF.SEND_FLUSH)) await this.conn.request(CMD.FLUSH, 0, 0, 0);
  }

  /**
   * nbd_client_co_block_status: one extent (REQ_ONE). Without a meta
   * context everything is data. The x-dirty-bitmap hack reads a bitmap's
   * DIRTY bit as HOLE (dirty areas show as holes) and caps allocation
   * depths at 2, as QEMU.
   */
  async blockStatus(offset: number, length: number): Promise<Extent> {
    checkRequest('block status', offset, length, this.size());
    const base = { offset, allocated: true, depth: 0, hostOffset: offset, filename: this.exactFilename || undefined };
    if (!this.info.baseAllocation || length === 0) return { ...base, length, data: true, zero: false };
    const align = this.requestAlignment();
    const len = Math.min(INT_MAX - (INT_MAX % align), length, this.size() - offset);
    const { extent } = await this.conn.request(CMD.BLOCK_STATUS, CMD_FLAG.REQ_ONE, offset, len);
    let flags = extent!.flags;
    if (this.opts.xDirtyBitmap === 'qemu:allocation-depth' && flags > 2) flags = 2;
    const data = (flags & STATE_HOLE) === 0;
    const zero = (flags & STATE_ZERO) !== 0;
    // A hole that does not read as zeroes is not allocated (bdrv_co_block_status sets ALLOCATED only for DATA or ZERO): a dirty area under x-dirty-bitmap.
    return { ...base, length: extent!.length, data, zero, allocated: data || zero };
  }

  /**
   * nbd_co_truncate, as block_resize calls it (not exact): NBD cannot
   * resize, but a size no larger than the export's is left as it is.
   */
  protected override async doResize(newSize: number, _prealloc: Preallocation): Promise<void> {
    if (newSize > this.size()) throw new BlockError('INVALID_ARGUMENT', 'Cannot grow NBD nodes', { errno: 'EINVAL' });
  }

  /** nbd_client_reopen_prepare: a read-only export stays read-only. */
  override async prepareReopen(state: ReopenState): Promise<StagedReopen> {
    if (!state.readOnly && this.has(TF.READ_ONLY)) throw new BlockError('READ_ONLY', "Can't reopen read-only NBD mount as read/write", { errno: 'EACCES' });
    return {};
  }

  /** nbd has neither bdrv_get_info nor an allocated file size: no dirty flag and no actual size in queries. */
  async imageInfo(): Promise<NodeImageInfo> {
    return { filename: this.exactFilename, format: 'nbd', virtualSize: this.size(), dirtyFlag: null };
  }

  /** nbd_close: NBD_CMD_DISC, then the socket closes; no attempt to connect again. */
  protected async doClose(): Promise<void> {
    await this.conn.close();
  }
}

/** Every piece settles before the request ends (no piece outlives a failed request); the first failure is the request's. */
async function settleAll(parts: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(parts);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/** fd passing needs a monitor that holds descriptors (qsd's stub words it so); vsock is not reachable from Node. */
function unsupportedAddress(server: { type: string }): BlockError {
  if (server.type === 'fd') return new BlockError('UNSUPPORTED', 'only QEMU supports file descriptor passing', { errno: 'ENOTSUP' });
  return new BlockError('UNSUPPORTED', `NBD server address type '${server.type}' is not supported by blockemu`, { errno: 'ENOTSUP' });
}
