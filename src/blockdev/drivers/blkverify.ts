import { constants } from 'node:os';
import { errnoOf } from '../../image/errno.js';
import { BlockError } from '../../image/errors.js';
import { checkRequest } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import type { NodeChild } from '../child.js';
import type { NamePolicy, NodeName } from '../filename.js';
import type { BlockNode, WriteFlags, ZeroFlags } from '../node.js';
import { PassThroughFilter } from './filter-node.js';

/** blkverify_refresh_filename: blkverify:RAW:TEST when both have plain names, else the default json: name. */
const BLKVERIFY_NAMING: NamePolicy = {
  protocol: true,
  strong: [],
  exactName(node, _options, names: ReadonlyMap<BlockNode, NodeName>) {
    const raw = node.child('raw');
    const test = node.child('test');
    const r = raw ? names.get(raw)!.exact : '';
    const t = test ? names.get(test)!.exact : '';
    return r !== '' && t !== '' ? `blkverify:${r}:${t}` : '';
  },
};

/**
 * The `blkverify` driver (block/blkverify.c): every request goes to both
 * the image under test (`test`) and a raw copy of what it should hold
 * (`raw`, the filtered child); reads must return the same bytes and both
 * must succeed or fail alike. A difference is reported in QEMU's words —
 * where QEMU ends the process, a tool does the same and a daemon fails the
 * request. The test image answers: its data, its length, its flush.
 */
export class BlkverifyNode extends PassThroughFilter {
  readonly driver = 'blkverify';

  private raw: BlockNode;
  private test: BlockNode;

  constructor(name: string, rawLink: NodeChild, testLink: NodeChild, readOnly: boolean) {
    super(name, readOnly, [rawLink, testLink]);
    this.raw = rawLink.node;
    this.test = testLink.node;
  }

  protected get filtered(): BlockNode {
    return this.raw;
  }

  override get namePolicy(): NamePolicy {
    return BLKVERIFY_NAMING;
  }

  override async childReplaced(c: NodeChild, node: BlockNode): Promise<void> {
    if (c.name === 'raw') this.raw = node;
    if (c.name === 'test') this.test = node;
  }

  override size(): number {
    return this.test.size();
  }

  /** Without a block status of its own: all data (a protocol driver's default). */
  override async blockStatus(offset: number, length: number): Promise<Extent> {
    checkRequest('block status', offset, length, this.size());
    return { offset, length, data: true, zero: false, allocated: true, depth: 0, hostOffset: offset };
  }
  override async blockStatusRuns(offset: number, length: number): Promise<Extent[]> {
    return [await this.blockStatus(offset, length)];
  }

  protected override async doRead(offset: number, length: number): Promise<Uint8Array> {
    const [t, r] = await this.both('read', offset, length, (n) => n.read(offset, length));
    const a = t!;
    const b = r!;
    const at = a.findIndex((x, k) => x !== b[k]);
    if (at >= 0) this.mismatch('read', offset, length, `contents mismatch at offset ${offset + at}`);
    return a;
  }
  protected override async doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    buf.set(await this.doRead(offset, buf.length));
  }
  protected override async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    await this.both('write', offset, data.length, (n) => n.write(offset, data, flags));
  }
  /** No zero writes of its own: the block layer writes a zeroed buffer, checked as any write. */
  protected override async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    if (flags.noFallback) throw new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' });
    const zeroes = new Uint8Array(length);
    await this.both('write', offset, length, (n) => n.write(offset, zeroes, { fua: flags.fua }));
  }
  /** No discard of its own: nothing happens. */
  protected override async doDiscard(offset: number, length: number): Promise<void> {
    checkRequest('discard', offset, length, this.size());
  }
  /** blkverify_co_flush: the test image only. */
  protected override doFlush(): Promise<void> {
    return this.test.flush();
  }

  /** blkverify_co_prwv: both children at once; their results must agree; the test image's is the answer. */
  private async both<T>(what: 'read' | 'write', offset: number, length: number, op: (n: BlockNode) => Promise<T>): Promise<[T | undefined, T | undefined]> {
    const settle = (n: BlockNode) => op(n).then((v) => ({ v, err: undefined as unknown, code: 0 }), (err: unknown) => ({ v: undefined, err, code: -errnoNumber(err) }));
    const [t, r] = await Promise.all([settle(this.test), settle(this.raw)]);
    if (t.code !== r.code) this.mismatch(what, offset, length, `return value mismatch ${t.code} != ${r.code}`);
    if (t.err !== undefined) throw t.err;
    return [t.v, r.v];
  }

  /** blkverify_err: QEMU prints this and exits; the node reports it (a tool exits, a daemon logs) and the request fails. */
  private mismatch(what: 'read' | 'write', offset: number, length: number, detail: string): never {
    const message = `blkverify: ${what} offset=${offset} bytes=${length} ${detail}`;
    this.eventSink?.({ kind: 'verify-mismatch', node: this, message });
    throw new BlockError('IO', message, { errno: 'EIO' });
  }
}

/** The errno's number, as blkverify's "return value mismatch" prints the (negated) results. */
function errnoNumber(err: unknown): number {
  return (constants.errno as Record<string, number>)[errnoOf(err)] ?? constants.errno.EIO;
}
