import { errnoOf, strerrorOf } from '../../image/errno.js';
import { BlockError } from '../../image/errors.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../../image/perm.js';
import { checkRequest } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import { CHILD_DATA, type NodeChild, type PermPair } from '../child.js';
import { detachChild, linkChild } from '../graph-edit.js';
import { GraphTransaction } from '../graph-transaction.js';
import { refreshPerms } from '../permissions.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';

export type QuorumReadPattern = 'quorum' | 'fifo';

export interface QuorumOptions {
  threshold: number;
  readPattern: QuorumReadPattern;
  /** blkverify=on: two children that must always agree; a mismatch is reported as QEMU's blkverify mode prints it. */
  blkverify: boolean;
  /** rewrite-corrupted=on: children outvoted on a read get the winning data written back. */
  rewriteCorrupted: boolean;
}

/** DEFAULT_PERM_PASSTHROUGH: what a parent's permissions pass on to a child. */
const PASSTHROUGH = PERM_CONSISTENT_READ | PERM_WRITE | PERM_WRITE_UNCHANGED | PERM_RESIZE;

/** Every option is strong (quorum_strong_runtime_opts); the children are named as a list (quorum_gather_child_options). */
const QUORUM_NAMING: NamePolicy = {
  protocol: false,
  strong: ['vote-threshold', 'blkverify', 'rewrite-corrupted', 'read-pattern'],
  exactName: () => '',
  childOptions: (node, names) => ({ children: QuorumNode.ordered(node.childList()).map((c) => names.get(c.node)!.options) }),
};

const SECTOR = 512;

/** One child's answer to a request: its data or its error. */
type Outcome = { ok: true; data?: Uint8Array } | { ok: false; err: unknown };

/**
 * The `quorum` driver (block/quorum.c): the same data on several children.
 * Writes go to all of them and succeed when at least `vote-threshold` do;
 * reads (read-pattern quorum) read all, and the version most of them
 * return wins if at least `vote-threshold` returned it — the others are
 * reported (QUORUM_REPORT_BAD) and, with rewrite-corrupted, overwritten;
 * too few votes fail the read (QUORUM_FAILURE). read-pattern fifo reads
 * the first child that answers. In blkverify mode (two children, both
 * needed) a mismatch is reported in QEMU's words and fails the read:
 * QEMU ends the process there, which a daemon serving others must not.
 */
export class QuorumNode extends BlockNode {
  readonly driver = 'quorum';

  /** The index the next child added gets (s->next_child_index). */
  private nextIndex: number;

  constructor(
    name: string,
    links: NodeChild[],
    private readonly o: QuorumOptions,
    readOnly: boolean,
  ) {
    super(name, readOnly, links);
    this.nextIndex = links.length;
  }

  /** quorum_add_child: `node` becomes children.N, with the permissions the quorum's own users need of it. */
  async addChild(node: BlockNode): Promise<void> {
    if (this.o.blkverify) throw new BlockError('INVALID_ARGUMENT', 'Cannot add a child to a quorum in blkverify mode');
    const name = `children.${this.nextIndex}`;
    await GraphTransaction.run(async (tran) => {
      const cum = this.cumulativePerm();
      linkChild(tran, this, name, CHILD_DATA, node, this.childPerm(undefined, cum.perm, cum.shared));
      await refreshPerms([this], tran);
    });
    this.nextIndex++;
  }

  /** quorum_del_child: never below the vote threshold; the last index is given back when its child goes. */
  async delChild(link: NodeChild): Promise<void> {
    if (this.members().length <= this.o.threshold) throw new BlockError('INVALID_ARGUMENT', `The number of children cannot be lower than the vote threshold ${this.o.threshold}`);
    if (link.name === `children.${this.nextIndex - 1}`) this.nextIndex--;
    await detachChild(link);
  }

  /** quorum_open's checks, in its order and words, before any child is opened. */
  static check(children: number, o: QuorumOptions): void {
    const fail = (m: string) => new BlockError('INVALID_ARGUMENT', m, { errno: 'EINVAL' });
    if (children < 1) throw fail('Number of provided children must be 1 or more');
    if (o.threshold < 1) throw fail("Parameter 'vote-threshold' expects a value >= 1");
    if (o.threshold > children) throw fail('threshold may not exceed children count');
    if (o.readPattern === 'quorum' && o.blkverify && (children !== 2 || o.threshold !== 2)) {
      throw fail('blkverify=on can only be set if there are exactly two files and vote-threshold is 2');
    }
    if (o.readPattern === 'quorum' && o.rewriteCorrupted && o.blkverify) throw fail('rewrite-corrupted=on cannot be used with blkverify=on');
  }

  /** quorum_getlength: every child must be as long as the first (the open fails otherwise, as refresh_total_sectors fails it). */
  checkLengths(): void {
    const sizes = this.members().map((n) => n.size());
    if (sizes.some((s) => s !== sizes[0])) throw new BlockError('IO', 'Could not refresh total sector count: Input/output error', { errno: 'EIO' });
  }

  override get namePolicy(): NamePolicy {
    return QUORUM_NAMING;
  }

  /** quorum_child_perm: reads, writes and resizes pass through; only reads and unchanged writes are shared, so the children cannot drift apart. */
  override childPerm(_c: NodeChild | undefined, perm: number, shared: number): PermPair {
    const p = (perm & PASSTHROUGH) | (this.o.rewriteCorrupted ? PERM_WRITE : 0);
    return { perm: p, shared: (shared & (PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED)) | (PERM_ALL & ~PASSTHROUGH) };
  }

  /** The children in the order they were added (s->children: by their index in children.N), not the graph's newest-first. */
  private members(): BlockNode[] {
    return QuorumNode.ordered(this.childList()).map((c) => c.node);
  }

  static ordered(links: readonly NodeChild[]): NodeChild[] {
    const index = (c: NodeChild) => Number(c.name.slice('children.'.length));
    return links.filter((c) => c.name.startsWith('children.')).sort((a, b) => index(a) - index(b));
  }

  size(): number {
    return this.members()[0]!.size();
  }

  protected async doRead(offset: number, length: number): Promise<Uint8Array> {
    checkRequest('read', offset, length, this.size());
    return this.o.readPattern === 'fifo' ? this.readFifo(offset, length) : this.readQuorum(offset, length);
  }

  /** read_fifo_child: the children in order until one reads. */
  private async readFifo(offset: number, length: number): Promise<Uint8Array> {
    let last: unknown;
    for (const child of this.members()) {
      try {
        return await child.read(offset, length);
      } catch (err) {
        this.reportBad('read', offset, length, child, err);
        last = err;
      }
    }
    throw last;
  }

  /** read_quorum_children and quorum_vote. */
  private async readQuorum(offset: number, length: number): Promise<Uint8Array> {
    const children = this.members();
    const outcomes = await Promise.all(children.map((c) => c.read(offset, length).then((data): Outcome => ({ ok: true, data }), (err: unknown): Outcome => ({ ok: false, err }))));
    outcomes.forEach((r, i) => {
      if (!r.ok) this.reportBad('read', offset, length, children[i]!, r.err);
    });
    this.checkEnoughSucceeded(outcomes, offset, length);
    const good = outcomes.flatMap((r, i) => (r.ok ? [{ i, data: r.data! }] : []));
    const first = good[0]!;
    if (good.every((g) => g === first || this.agree(first.data, g.data, offset, length))) return first.data;
    // Versions as quorum_count_vote lists them: the newest first, each with its children newest first.
    const versions: { data: Uint8Array; items: number[] }[] = [];
    for (const g of good) {
      const v = versions.find((x) => Buffer.compare(x.data, g.data) === 0);
      if (v) v.items.unshift(g.i);
      else versions.unshift({ data: g.data, items: [g.i] });
    }
    // quorum_get_vote_winner: the first in that order with the most votes.
    const winner = versions.reduce((w, v) => (v.items.length > w.items.length ? v : w));
    if (winner.items.length < this.o.threshold) {
      this.reportFailure(offset, length);
      throw new BlockError('IO', `quorum: no version of [${offset}, ${offset + length}) has ${this.o.threshold} votes`, { errno: 'EIO' });
    }
    const bad = versions.filter((v) => v !== winner).flatMap((v) => v.items);
    for (const i of bad) this.reportBad('read', offset, length, children[i]!, undefined);
    // quorum_rewrite_bad_versions: a correction attempt; its failures are ignored.
    if (this.o.rewriteCorrupted) await Promise.all(bad.map((i) => children[i]!.write(offset, winner.data).catch(() => undefined)));
    return winner.data;
  }

  /** quorum_compare: equal bytes; in blkverify mode a difference is told as QEMU prints it and fails the read. */
  private agree(a: Uint8Array, b: Uint8Array, offset: number, length: number): boolean {
    if (!this.o.blkverify) return Buffer.compare(a, b) === 0;
    const at = a.findIndex((x, k) => x !== b[k]);
    if (at < 0) return true;
    const text = `quorum: offset=${offset} bytes=${length} contents mismatch at offset ${offset + at}`;
    this.eventSink?.({ kind: 'verify-mismatch', node: this, message: text });
    throw new BlockError('IO', text, { errno: 'EIO' });
  }

  protected async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    checkRequest('write', offset, data.length, this.size());
    await this.writeAll(offset, data.length, (c) => c.write(offset, data, flags));
  }

  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    checkRequest('write zeroes', offset, length, this.size());
    await this.writeAll(offset, length, (c) => c.writeZeroes(offset, length, flags));
  }

  /** write_quorum_entry on every child at once; enough of them must succeed. */
  private async writeAll(offset: number, length: number, op: (c: BlockNode) => Promise<void>): Promise<void> {
    const children = this.members();
    const outcomes = await Promise.all(children.map((c) => op(c).then((): Outcome => ({ ok: true }), (err: unknown): Outcome => ({ ok: false, err }))));
    outcomes.forEach((r, i) => {
      if (!r.ok) this.reportBad('write', offset, length, children[i]!, r.err);
    });
    this.checkEnoughSucceeded(outcomes, offset, length);
  }

  /** quorum_has_too_much_io_failed: fewer successes than the threshold fail with the most common error (quorum_vote_error). */
  private checkEnoughSucceeded(outcomes: Outcome[], offset: number, length: number): void {
    if (outcomes.filter((r) => r.ok).length >= this.o.threshold) return;
    this.reportFailure(offset, length);
    throw mostCommonError(outcomes.flatMap((r) => (r.ok ? [] : [r.err])));
  }

  /** Quorum has no discard: the request succeeds and nothing changes (bdrv_co_pdiscard without a driver callback). */
  protected async doDiscard(offset: number, length: number): Promise<void> {
    checkRequest('discard', offset, length, this.size());
  }

  /** quorum_co_flush: every child in turn; enough must succeed, else the most common error. */
  protected async doFlush(): Promise<void> {
    const errors: unknown[] = [];
    for (const child of this.members()) {
      try {
        await child.flush();
      } catch (err) {
        this.reportBad('flush', 0, 0, child, err);
        errors.push(err);
      }
    }
    if (this.members().length - errors.length < this.o.threshold) throw mostCommonError(errors);
  }

  /**
   * quorum_co_block_status: data where any child has data (as far as the
   * child with the longest such run says), else zero as far as every
   * child agrees; a child that fails makes it all data.
   */
  async blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    checkRequest('block status', offset, length, this.size());
    let zeroRun = length;
    let dataRun = 0;
    for (const child of this.members()) {
      let e: Extent;
      try {
        e = await child.blockStatus(offset, length, opts);
      } catch (err) {
        this.reportBad('read', offset, length, child, err);
        dataRun = length;
        break;
      }
      if (e.zero) zeroRun = Math.min(zeroRun, e.length);
      else dataRun = Math.max(dataRun, e.length);
    }
    if (dataRun > 0) return { offset, length: dataRun, data: true, zero: false, allocated: true, depth: 0 };
    return { offset, length: zeroRun, data: false, zero: true, allocated: true, depth: 0 };
  }

  /** No info of its own: its children's bytes on disk summed (bdrv_sum_allocated_file_size). */
  async imageInfo(): Promise<NodeImageInfo> {
    const infos = await Promise.all(this.members().map((c) => c.imageInfo()));
    const sizes = infos.map((i) => i.actualSize);
    return {
      filename: '',
      format: 'quorum',
      virtualSize: this.size(),
      ...(sizes.every((s) => s !== undefined) ? { actualSize: sizes.reduce((a, b) => a! + b!, 0) } : {}),
      dirtyFlag: null,
    };
  }

  /** QUORUM_REPORT_BAD for one child: its error (strerror) when it failed, none when it was outvoted. */
  private reportBad(type: 'read' | 'write' | 'flush', offset: number, length: number, child: BlockNode, err: unknown): void {
    const { sectorNum, sectorsCount } = sectors(offset, length);
    this.eventSink?.({ kind: 'quorum-report-bad', node: this, type, ...(err !== undefined ? { error: strerrorOf(err) } : {}), childName: child.nodeName, sectorNum, sectorsCount });
  }

  /** QUORUM_FAILURE: no quorum was reached for the request. */
  private reportFailure(offset: number, length: number): void {
    const { sectorNum, sectorsCount } = sectors(offset, length);
    this.eventSink?.({ kind: 'quorum-failure', node: this, sectorNum, sectorsCount });
  }

  protected async doClose(): Promise<void> {}
}

function sectors(offset: number, length: number): { sectorNum: number; sectorsCount: number } {
  const start = Math.floor(offset / SECTOR);
  return { sectorNum: start, sectorsCount: Math.ceil((offset + length) / SECTOR) - start };
}

/** quorum_vote_error: the error most children failed with (the last seen wins a tie, as the vote list is newest first). */
function mostCommonError(errors: unknown[]): unknown {
  const counts = new Map<string, { n: number; err: unknown }>();
  for (const err of errors) {
    // errnoOf rethrows what is no I/O error (a bug), as everywhere else.
    const key = errnoOf(err);
    const c = counts.get(key);
    if (c) c.n++;
    else counts.set(key, { n: 1, err });
  }
  let best: { n: number; err: unknown } | undefined;
  for (const c of [...counts.values()].reverse()) if (!best || c.n > best.n) best = c;
  return best?.err ?? new BlockError('IO', 'Input/output error', { errno: 'EIO' });
}
