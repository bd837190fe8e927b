/**
 * Faults armed on a node by plain words (blockemu's extension, QMP
 * `__org.blockemu_fault-add`, `--fault`, `startDaemon({ faults })`): the
 * domain shapes, free of QMP. A fault sits on the node's own request path
 * (node-faults.ts), not in the graph, so arming one changes no node,
 * name or query answer.
 */

/** The requests a fault looks at; `any` is every kind of the five. */
export type FaultIoType = 'read' | 'write' | 'write-zeroes' | 'discard' | 'flush' | 'any';

/**
 * Which requests a fault takes. Requests of the kind (overlapping
 * [offset, offset+length) when a range is given) are counted from when the
 * fault is armed; the fault fires from the `nth` of them (default the
 * first), `count` times (default: once when `nth` is given, else without
 * end). A fault that has fired `count` times is spent: it stays listed.
 */
export interface FaultMatch {
  iotype: FaultIoType;
  nth?: number;
  count?: number;
  offset?: number;
  length?: number;
}

/** When a `crash` fault ends the daemon. */
export type CrashPoint = 'before-request' | 'after-request' | 'after-bytes-written' | 'job-progress';

export type FaultSpec =
  /** The request fails with `errno` (a name: EIO, ENOSPC, …) without reaching the driver. */
  | ({ type: 'error'; errno: string } & FaultMatch)
  /** Writes (and zero writes) pass while the bytes written since arming stay within `bytes`; the one that would pass it, and every one after, fail with ENOSPC. */
  | { type: 'enospc-after'; bytes: number }
  /** The request waits `ms` milliseconds of the daemon's clock (virtual time with --clock virtual) first. */
  | ({ type: 'latency'; ms: number } & FaultMatch)
  /** The request waits until the fault is released (or removed). */
  | ({ type: 'stall' } & FaultMatch)
  /** A write writes its first `bytes` (rounded down to 512) and then fails with `errno` (default EIO). */
  | ({ type: 'torn-write'; bytes: number; errno?: string } & Omit<FaultMatch, 'iotype'>)
  /**
   * The process exits with `status` at once (no flush, no close, no
   * reply): before a matching request reaches the driver, after it
   * completed, after the write that brings the bytes written since
   * arming to `bytes`, or when a job using the node reports progress of
   * `bytes` or more.
   */
  | ({ type: 'crash'; point: CrashPoint; status?: number; bytes?: number } & FaultMatch);

export type FaultType = FaultSpec['type'];

/** A fault that fired, for the daemon's log line and event. */
export interface FaultFired {
  id: string;
  type: FaultType | 'qmp-error';
  /** The node (absent for a QMP command fault). */
  node?: string;
  /** The command a qmp-error fault answered. */
  command?: string;
  /** The job whose progress set off a job-progress crash, and that progress. */
  job?: string;
  progress?: number;
  iotype?: string;
  offset?: number;
  length?: number;
  errno?: string;
  /** Firings so far, this one included. */
  hits: number;
}

/** What __org.blockemu_query-faults lists of one fault. */
export interface FaultState {
  id: string;
  type: FaultType | 'qmp-error';
  node?: string;
  command?: string;
  /** Requests (or calls) that matched so far. */
  matched: number;
  /** Times it fired. */
  hits: number;
  /** It will not fire again (count reached, stall released). */
  spent: boolean;
  /** Requests a stall holds now. */
  waiting?: number;
}

/** A QMP command that answers with an error instead of running. */
export interface CommandFaultSpec {
  command: string;
  errorClass: string;
  desc: string;
  /** Calls that fail, from the next one; 0: every call. Default 1. */
  count?: number;
}
