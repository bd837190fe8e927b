import { constants } from 'node:os';
import { BLKDEBUG_EVENT_NAMES } from './blkdebug-events.js';
import { BlockError } from '../../image/errors.js';
import type { Extent } from '../../image/types.js';
import { strerror } from '../../image/errno.js';
import { defaultChildPerms, type NodeChild, type PermPair } from '../child.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type IoType, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';
import { type ReopenPlan, writableAfter } from '../permissions.js';
import { type HeldWait, HeldRequests } from '../faults/held.js';
import { TrackedRequests } from '../tracked-requests.js';
import { paddedRange, padWrite } from './request-padding.js';
import { BLKDEBUG_NAMING, checkLimits, type LimitOption } from './blkdebug-options.js';

/** blkdebug_child_perm: the defaults, plus what take-child-perms adds and less what unshare-child-perms removes. */
export function blkdebugChildPerm(role: number, writable: boolean, perm: number, shared: number, take: number, unshare: number): PermPair {
  const p = defaultChildPerms(role, writable, perm, shared);
  return { perm: p.perm | take, shared: p.shared & ~unshare };
}

export interface InjectErrorRule {
  event: string;
  /** 0: any state. */
  state: number;
  /** Request kinds that fail; QEMU's default is every kind but block-status. */
  iotypes: ReadonlySet<IoType>;
  errno: number;
  /** 512-byte sector the request must cover; -1: any request. */
  sector: number;
  once: boolean;
  immediately: boolean;
}

export interface SetStateRule {
  event: string;
  state: number;
  newState: number;
}

/** What `break` checks its event against. */
export const BLKDEBUG_EVENTS: ReadonlySet<string> = new Set(BLKDEBUG_EVENT_NAMES);

/** A request held at a breakpoint until `resume TAG` (BlkdebugSuspendedReq). */
interface SuspendedRequest {
  tag: string;
  resume(): void;
}

export const DEFAULT_IOTYPES: ReadonlySet<IoType> = new Set<IoType>(['read', 'write', 'write-zeroes', 'discard', 'flush']);

/** MAX_BOUNCE_BUFFER: the largest zero buffer the block layer writes at once for a write-zeroes fallback. */
const MAX_BOUNCE_BUFFER = 16 << 20;

const ERRNO_NAMES = new Map(Object.entries(constants.errno as Record<string, number>).map(([name, n]) => [n, name]));

/**
 * blkdebug (block/blkdebug.c): a filter that fails requests by rule, for
 * testing error paths. Events announced by the format driver above
 * (read_aio, write_aio, l2_load, …), by the generic layer (pwritev,
 * pwritev_zero, pwritev_done on this node; flush_to_os and flush_to_disk
 * when the node above flushes) and `none` at open arm inject-error rules whose
 * state matches; the armed set is replaced by each event that has matching
 * rules; set-state rules move the state machine (starting at 1). Each
 * request fails with the first armed rule that covers its kind and sector;
 * `once` rules disappear after firing; without `immediately` the failure
 * comes after one turn of the event loop, as QEMU's coroutine yields.
 *
 * The generic block layer's events about requests on this node itself are
 * announced here, since only blkdebug listens to them: pwritev (or
 * pwritev_zero) before a write and pwritev_done after it, failed or not
 * (bdrv_aligned_pwritev). A flush checks the rules only when something was
 * written since the last flush, as bdrv_co_flush skips the driver's flush
 * to disk otherwise.
 */
export class BlkdebugNode extends BlockNode {
  readonly driver = 'blkdebug';
  override get injectsFaults(): boolean {
    return true;
  }
  private state = 1;
  private active: InjectErrorRule[] = [];
  private readonly inject: InjectErrorRule[];
  /** The `align` option (0: none): requests to this node are aligned so (bs->bl.request_alignment). */
  private readonly align: number;
  /** The write-zeroes limits (opt-write-zero, max-write-zero) and max-transfer, 0 where not set. */
  private readonly limits: Record<LimitOption, number>;

  private image: BlockNode;
  /** Breakpoints (suspend rules), newest first as QEMU keeps each event's rules; one fires once and goes. */
  private breakpoints: Array<{ event: string; tag: string }> = [];
  /** Requests held at a breakpoint, newest first. */
  private suspended: SuspendedRequest[] = [];
  /**
   * Suspensions the request that announced an event still owes: our events
   * are announced synchronously, so the request waits at its next step
   * into this node (the I/O that follows the event in QEMU too).
   */
  private owed: Promise<void>[] = [];
  /** Told whenever a request is suspended (wait_break, and a cancel that must not wait on it). */
  private readonly heldHere = new HeldRequests(() => this.suspended.length > 0);
  /** Requests in flight, for the serialisation of the read-modify-writes `align` makes (the generic layer's, on this node). */
  private readonly tracked = new TrackedRequests();

  /** `options`: the node's blockdev options, of which the constraint options (align, max-transfer, …) are checked here. */
  constructor(
    name: string,
    imageLink: NodeChild,
    inject: InjectErrorRule[],
    private readonly setState: SetStateRule[],
    readOnly: boolean,
    options: Record<string, unknown> = {},
    private readonly takeChildPerms = 0,
    private readonly unshareChildPerms = 0,
  ) {
    // Checked before the node takes the link: a refused node leaves it to the open's undo.
    const limits = checkLimits(options, imageLink.node.requestAlignment());
    super(name, readOnly, [imageLink]);
    this.image = imageLink.node;
    this.align = limits.align;
    this.limits = limits;
    this.inject = [...inject];
    this.debugEvent('none');
  }

  override requestAlignment(): number {
    return this.align || 1;
  }

  /**
   * blkdebug_debug_event: QEMU keeps each event's rules newest first and
   * processes them in that order, so of the set-state rules that match,
   * the last one processed, the first one given, sets the next state;
   * matching inject rules replace the armed set, first given first.
   * Every rule looks at the state as it was before the event.
   */
  override debugEvent(event: string): void {
    let armed: InjectErrorRule[] | undefined;
    for (const r of this.inject) {
      if (r.event !== event || (r.state !== 0 && r.state !== this.state)) continue;
      (armed ??= []).push(r);
    }
    const set = this.setState.find((r) => r.event === event && (r.state === 0 || r.state === this.state));
    if (armed) this.active = armed;
    if (set) this.state = set.newState;
    if (this.breakpoints.length > 0) this.hitBreakpoints(event);
  }

  /** suspend_request for each breakpoint on `event`, newest first: the rule goes, the request is held, the line printed. */
  private hitBreakpoints(event: string): void {
    const hit = this.breakpoints.filter((b) => b.event === event);
    if (hit.length === 0) return;
    this.breakpoints = this.breakpoints.filter((b) => b.event !== event);
    for (const b of hit) {
      let resume!: () => void;
      this.owed.push(new Promise<void>((r) => (resume = r)));
      this.suspended.unshift({ tag: b.tag, resume });
      this.print(`blkdebug: Suspended request '${b.tag}'\n`);
    }
    this.heldHere.held();
  }

  /** Where the request that announced a breakpoint's event waits, once for each breakpoint it hit. */
  private async suspendPoint(): Promise<void> {
    while (this.owed.length > 0) await this.owed.shift();
  }

  private print(text: string): void {
    if (this.eventSink) this.eventSink({ kind: 'debug-print', node: this, text });
    else process.stdout.write(text);
  }

  /** blkdebug_debug_breakpoint: the event must be one of BlkdebugEvent's, else ENOENT. */
  setBreakpoint(event: string, tag: string): 'ENOENT' | undefined {
    if (!BLKDEBUG_EVENTS.has(event)) return 'ENOENT';
    this.breakpoints.unshift({ event, tag });
    return undefined;
  }

  /** blkdebug_debug_resume: the newest request held under `tag` goes on; ENOENT when none is. */
  resume(tag: string): 'ENOENT' | undefined {
    return this.resumeTagged(tag, false) ? undefined : 'ENOENT';
  }

  /**
   * blkdebug_debug_remove_breakpoint: the tag's breakpoints go and its held
   * requests all go on; ENOENT unless a breakpoint went — QEMU's resume of
   * all requests of a tag never reports success (it looks for one more
   * after the last), so resuming held requests alone still answers ENOENT.
   */
  removeBreakpoint(tag: string): 'ENOENT' | undefined {
    const before = this.breakpoints.length;
    this.breakpoints = this.breakpoints.filter((b) => b.tag !== tag);
    this.resumeTagged(tag, true);
    return this.breakpoints.length !== before ? undefined : 'ENOENT';
  }

  /** blkdebug_debug_is_suspended */
  isSuspended(tag: string): boolean {
    return this.suspended.some((r) => r.tag === tag);
  }

  /** Resolves once a request is held under `tag` (wait_break's aio_poll loop); never, if none ever is, as in QEMU. */
  async waitSuspended(tag: string): Promise<void> {
    while (!this.isSuspended(tag)) await this.heldHere.when(true).promise;
  }

  /** Resolves once any request is held (at once if one is); cancel forgets the wait. */
  whenHeld(): HeldWait {
    return this.heldHere.when();
  }

  /** Its breakpoints' held requests, and those of stalls armed on it. */
  override whenRequestHeld(): HeldWait {
    const mine = this.heldHere.when();
    const stalls = super.whenRequestHeld();
    if (!stalls) return mine;
    return {
      promise: Promise.race([mine.promise, stalls.promise]),
      cancel: () => {
        mine.cancel();
        stalls.cancel();
      },
    };
  }

  /** A shutdown: its breakpoints go and the requests they hold go on (the daemon must not wait on them; QEMU would hang). */
  override releaseHeldRequests(): void {
    this.breakpoints = [];
    for (const tag of new Set(this.suspended.map((r) => r.tag))) this.resumeTagged(tag, true);
  }

  private resumeTagged(tag: string, all: boolean): boolean {
    let any = false;
    for (;;) {
      const i = this.suspended.findIndex((r) => r.tag === tag);
      if (i < 0) return any;
      const [r] = this.suspended.splice(i, 1);
      this.print(`blkdebug: Resuming request '${tag}'\n`);
      r!.resume();
      any = true;
      if (!all) return true;
    }
  }

  /**
   * rule_check: the first armed rule that covers the request's kind and
   * sector decides. One with errno 0 lets the request through, and stays
   * armed even when `once` (QEMU returns before removing it), shadowing
   * the rules after it; any other fails the request (and goes, if `once`).
   */
  private async check(kind: IoType, offset: number, bytes: number): Promise<void> {
    if (this.owed.length > 0) await this.suspendPoint();
    const i = this.active.findIndex((r) => r.iotypes.has(kind) && (r.sector < 0 || (r.sector * 512 >= offset && r.sector * 512 < offset + bytes)));
    if (i < 0) return;
    const rule = this.active[i]!;
    if (rule.errno === 0) return;
    if (rule.once) {
      this.active.splice(i, 1);
      this.inject.splice(this.inject.indexOf(rule), 1);
    }
    if (!rule.immediately) await new Promise((r) => setImmediate(r));
    const name = ERRNO_NAMES.get(rule.errno) ?? `E${rule.errno}`;
    throw new BlockError('IO', strerror(name), { errno: name });
  }

  size(): number {
    return this.image.size();
  }
  override async childReplaced(c: NodeChild, node: BlockNode): Promise<void> {
    if (c.name === 'image') this.image = node;
  }

  override get isFilter(): boolean {
    return true;
  }

  override get namePolicy(): NamePolicy {
    return BLKDEBUG_NAMING;
  }

  override childPerm(c: NodeChild, perm: number, shared: number, plan?: ReopenPlan): PermPair {
    return blkdebugChildPerm(c.role, writableAfter(this, plan), perm, shared, this.takeChildPerms, this.unshareChildPerms);
  }
  /** A read waits for the serialising requests it overlaps (bdrv_aligned_preadv), over its blocks. */
  private async readTracked<T>(offset: number, length: number, read: () => Promise<T>): Promise<T> {
    // Without `align` no request is ever serialising: nothing to wait for, nothing to track.
    if (!this.align) {
      await this.check('read', offset, length);
      return read();
    }
    const { start, end } = paddedRange(offset, length, this.align);
    const req = this.tracked.begin(start, end - start);
    try {
      await this.tracked.waitSerialising(req);
      await this.check('read', offset, length);
      return await read();
    } finally {
      this.tracked.end(req);
    }
  }
  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.readTracked(offset, length, () => this.image.read(offset, length));
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.readTracked(offset, buf.length, () => this.image.readInto(buf, offset));
  }
  /**
   * bdrv_co_pwritev_part on this node: a write not aligned to `align` is
   * made serialising over its blocks (it waits for every overlapping
   * request) and padded with what they hold (request-padding.ts); a plain
   * one waits only for overlapping serialising requests. Then the
   * pwritev event, the write, pwritev_done.
   */
  protected async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    const align = this.requestAlignment();
    const { start, end } = paddedRange(offset, data.length, align);
    const req = this.align ? this.tracked.begin(start, end - start) : undefined;
    try {
      let buf = data;
      if (req && (start !== offset || end !== offset + data.length)) {
        await this.tracked.makeSerialising(req, align);
        buf = await padWrite(offset, data, align, {
          event: async (name) => {
            this.debugEvent(name);
            if (this.owed.length > 0) await this.suspendPoint();
          },
          read: async (o, l) => {
            await this.check('read', o, l);
            return this.image.read(o, l);
          },
        });
      }
      if (req) await this.tracked.waitSerialising(req);
      this.debugEvent('pwritev');
      try {
        await this.check('write', start, buf.length);
        return await this.image.write(start, buf, flags);
      } finally {
        this.debugEvent('pwritev_done');
        if (this.owed.length > 0) await this.suspendPoint();
      }
    } finally {
      if (req) this.tracked.end(req);
    }
  }
  /**
   * bdrv_co_do_pwrite_zeroes on this node with its limits: the request cut
   * at opt-write-zero boundaries and at max-write-zero; a piece shorter
   * than the alignment blkdebug refuses (ENOTSUP, to exercise the
   * fallback), so it is written as a buffer of zeroes (data, not a zero
   * cluster: iotest 204's map shows which).
   */
  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    this.debugEvent('pwritev_zero');
    try {
      const alignment = Math.max(this.limits['opt-write-zero'], this.requestAlignment());
      const maxZero = Math.floor((this.limits['max-write-zero'] || Number.MAX_SAFE_INTEGER) / alignment) * alignment;
      const maxTransfer = Math.min(this.limits['max-transfer'] || Infinity, MAX_BOUNCE_BUFFER);
      let head = offset % alignment;
      const tail = (offset + length) % alignment;
      while (length > 0) {
        let num = length;
        if (head) {
          num = Math.min(length, maxTransfer, alignment - head);
          head = (head + num) % alignment;
        } else if (tail && num > alignment) num -= tail;
        num = Math.min(num, maxZero);
        if (num >= alignment) {
          await this.check('write-zeroes', offset, num);
          await this.image.writeZeroes(offset, num, flags);
        } else {
          if (flags.noFallback) throw new BlockError('UNSUPPORTED', strerror('ENOTSUP'), { errno: 'ENOTSUP' });
          num = Math.min(num, maxTransfer);
          await this.check('write', offset, num);
          await this.image.write(offset, new Uint8Array(num), { fua: flags.fua ?? false });
        }
        offset += num;
        length -= num;
      }
    } finally {
      this.debugEvent('pwritev_done');
      if (this.owed.length > 0) await this.suspendPoint();
    }
  }
  protected async doDiscard(offset: number, length: number): Promise<void> {
    await this.check('discard', offset, length);
    return this.image.discard(offset, length);
  }
  /** blkdebug_co_flush: the rule check, made only when something was written (bdrv_co_flush skips the driver's flush to disk otherwise). */
  protected async doFlush(written: boolean): Promise<void> {
    if (this.owed.length > 0) await this.suspendPoint();
    if (written) await this.check('flush', 0, 0);
    return this.image.flush();
  }
  async blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    await this.check('block-status', offset, length);
    return this.image.blockStatus(offset, length, opts);
  }
  /** A protocol driver without its own allocated size: none is shown (bdrv_get_allocated_file_size: ENOTSUP), nor for formats above it. */
  async imageInfo(): Promise<NodeImageInfo> {
    const inner = await this.image.imageInfo();
    return { ...inner, format: 'blkdebug', actualSize: undefined };
  }
  protected async doClose(): Promise<void> {}
}
