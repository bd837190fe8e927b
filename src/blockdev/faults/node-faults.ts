import { BlockError } from '../../image/errors.js';
import { strerror } from '../../image/errno.js';
import type { IoType } from '../node.js';
import type { FaultFired, FaultSpec, FaultState } from './fault.js';
import { HeldRequests } from './held.js';

/** The kinds of request a node's fault layer sees (block status is never failed: blkdebug's default set leaves it out too). */
export type FaultRequestKind = Exclude<IoType, 'block-status'>;

const SECTOR = 512;

/** One armed fault and what it has seen. */
export class ArmedFault {
  /** Requests that matched (for enospc-after and after-bytes-written crashes: writes seen). */
  matched = 0;
  hits = 0;
  spent = false;
  /** Bytes written since arming (enospc-after, after-bytes-written). */
  written = 0;
  /** Requests a stall holds, each woken by release. */
  readonly waiters: Array<() => void> = [];

  constructor(
    readonly id: string,
    readonly spec: FaultSpec,
  ) {}

  /** How many times the fault may fire: once for an `nth` fault, else without end, unless `count` says. */
  get limit(): number {
    const s = this.spec;
    if (s.type === 'enospc-after') return Infinity;
    return s.count ?? (s.nth !== undefined ? 1 : Infinity);
  }

  /** Lets every held request go; a released stall holds no more. */
  release(): void {
    this.spent = true;
    for (const w of this.waiters.splice(0)) w();
  }

  state(node: string): FaultState {
    return { id: this.id, type: this.spec.type, node, matched: this.matched, hits: this.hits, spent: this.spent, ...(this.spec.type === 'stall' ? { waiting: this.waiters.length } : {}) };
  }
}

/** What the fault layer needs from outside the node: the clock's sleep, the log/event line, and the way the process dies. */
export interface FaultHost {
  sleep(ms: number): Promise<void>;
  fired(f: FaultFired): void;
  exit(status: number): void;
}

const isWrite = (kind: FaultRequestKind) => kind === 'write' || kind === 'write-zeroes';

/**
 * A node's faults, consulted by the node's generic request path
 * (BlockNode.read, write, …) where a driver would be called: a failing
 * fault fails the request as blkdebug fails it at that point, so what
 * the layers above see (dirty bitmaps, write counters, job error
 * policies) is the same. Faults are tried in the order they were armed:
 * latencies and stalls delay the request and let the later ones look at
 * it too; the first failing one ends it.
 */
export class NodeFaults {
  readonly list: ArmedFault[] = [];
  /** Requests its stalls hold. */
  readonly held = new HeldRequests(() => this.list.some((f) => f.waiters.length > 0));

  constructor(
    private readonly nodeName: string,
    private readonly host: FaultHost,
  ) {}

  /**
   * Runs `op` (the driver's part of the request) under the node's faults.
   * `tear` writes a prefix of a write's data, for torn writes.
   */
  async run<T>(kind: FaultRequestKind, offset: number, length: number, op: () => Promise<T>, tear?: (bytes: number) => Promise<void>): Promise<T> {
    const after: ArmedFault[] = [];
    for (const f of [...this.list]) {
      if (f.spent) continue;
      const s = f.spec;
      if (s.type === 'enospc-after' || (s.type === 'crash' && s.point === 'after-bytes-written')) {
        if (!isWrite(kind)) continue;
        f.matched++;
        if (s.type === 'crash') {
          after.push(f);
          continue;
        }
        if (f.hits === 0 && f.written + length <= s.bytes) {
          f.written += length;
          continue;
        }
        this.fire(f, kind, offset, length, 'ENOSPC');
        throw ioFault('ENOSPC');
      }
      if (!this.takes(f, kind, offset, length)) continue;
      switch (s.type) {
        case 'latency':
          this.fire(f, kind, offset, length);
          await this.host.sleep(s.ms);
          break;
        case 'stall':
          this.fire(f, kind, offset, length);
          await new Promise<void>((r) => {
            f.waiters.push(r);
            this.held.held();
          });
          break;
        case 'error':
          this.fire(f, kind, offset, length, s.errno);
          throw ioFault(s.errno);
        case 'torn-write': {
          const errno = s.errno ?? 'EIO';
          this.fire(f, kind, offset, length, errno);
          const keep = Math.floor(Math.min(s.bytes, length) / SECTOR) * SECTOR;
          if (keep > 0 && tear) await tear(keep);
          throw ioFault(errno);
        }
        case 'crash':
          if (s.point === 'before-request') {
            this.fire(f, kind, offset, length);
            this.host.exit(s.status ?? 137);
          } else {
            after.push(f);
          }
          break;
      }
    }
    if (after.length === 0) return op();
    try {
      return await op();
    } finally {
      for (const f of after) this.crashAfter(f, kind, offset, length);
    }
  }

  /** A crash fault whose point is after a request: the request has completed, failed or not. */
  private crashAfter(f: ArmedFault, kind: FaultRequestKind, offset: number, length: number): void {
    const s = f.spec;
    if (s.type !== 'crash') return;
    if (s.point === 'after-bytes-written') {
      f.written += length;
      if (f.written < (s.bytes ?? 0)) return;
    }
    this.fire(f, kind, offset, length);
    this.host.exit(s.status ?? 137);
  }

  /** Whether the request is one the fault fires on now (counting it if it is of the fault's kind and range). */
  private takes(f: ArmedFault, kind: FaultRequestKind, offset: number, length: number): boolean {
    const s = f.spec;
    if (s.type === 'enospc-after' || (s.type === 'crash' && s.point === 'job-progress')) return false;
    const iotype = s.type === 'torn-write' ? 'write' : s.iotype;
    if (iotype !== 'any' && iotype !== kind) return false;
    if (s.offset !== undefined) {
      const end = s.offset + (s.length ?? 1);
      if (length === 0 || offset >= end || offset + length <= s.offset) return false;
    }
    f.matched++;
    return f.matched >= (s.nth ?? 1) && f.hits < f.limit;
  }

  private fire(f: ArmedFault, kind: FaultRequestKind, offset: number, length: number, errno?: string): void {
    f.hits++;
    if (f.hits >= f.limit) f.spent = true;
    this.host.fired({ id: f.id, type: f.spec.type, node: this.nodeName, iotype: kind, offset, length, ...(errno ? { errno } : {}), hits: f.hits });
  }
}

/** The error a failing fault gives the request: blkdebug's (an I/O error with the errno's text). */
function ioFault(errno: string): BlockError {
  return new BlockError('IO', strerror(errno), { errno });
}
