import { BlockError } from '../../image/errors.js';
import type { Clock } from '../clock.js';
import type { BlockNode } from '../node.js';
import type { CommandFaultSpec, FaultFired, FaultSpec, FaultState } from './fault.js';
import { ArmedFault, type FaultHost, NodeFaults } from './node-faults.js';

interface CommandFault {
  id: string;
  spec: CommandFaultSpec;
  matched: number;
  hits: number;
}

const notFound = (id: string) => new BlockError('NOT_FOUND', `Fault '${id}' not found`);
const invalid = (msg: string) => new BlockError('INVALID_ARGUMENT', msg);

/**
 * Every fault of a daemon, by id: node faults live on their nodes
 * (node.faults, so a node without any pays nothing), QMP command faults
 * here. Ids are unique across both; generated ones are `fault0`,
 * `fault1`, … The daemon hears of every firing (onFired: its log line and
 * event) and says how the process dies (exit: process.exit by default —
 * no flush, no close, as a crash).
 */
export class FaultRegistry {
  onFired: ((f: FaultFired) => void) | undefined;
  exit: (status: number) => void = (status) => process.exit(status);
  private readonly nodes = new Map<string, { node: BlockNode; fault: ArmedFault }>();
  private readonly commands = new Map<string, CommandFault>();
  /** When each id was armed, for listing in that order. */
  private readonly armed = new Map<string, number>();
  private seq = 0;
  private generated = 0;
  private readonly host: FaultHost;

  constructor(clock: () => Clock) {
    this.host = {
      sleep: (ms) => clock().holdRequest(ms * 1e6),
      fired: (f) => this.onFired?.(f),
      exit: (status) => this.exit(status),
    };
  }

  /** Arms a fault on a node; returns its id. */
  add(node: BlockNode, spec: FaultSpec, id?: string): string {
    this.prune();
    checkSpec(spec);
    const key = this.newId(id);
    const fault = new ArmedFault(key, spec);
    node.faults ??= new NodeFaults(node.nodeName, this.host);
    node.faults.list.push(fault);
    this.nodes.set(key, { node, fault });
    return key;
  }

  /** Arms a fault on a QMP command; returns its id. */
  addCommand(spec: CommandFaultSpec, id?: string): string {
    if (spec.count !== undefined && spec.count < 0) throw invalid("Parameter 'count' expects a non-negative value");
    const key = this.newId(id);
    this.commands.set(key, { id: key, spec, matched: 0, hits: 0 });
    return key;
  }

  /** Disarms a fault (a stall lets its requests go first). */
  remove(id: string): void {
    const n = this.nodes.get(id);
    this.armed.delete(id);
    if (n) {
      n.fault.release();
      this.nodes.delete(id);
      const list = n.node.faults?.list;
      if (list) {
        list.splice(list.indexOf(n.fault), 1);
        if (list.length === 0) n.node.faults = undefined;
      }
      return;
    }
    if (!this.commands.delete(id)) throw notFound(id);
  }

  /** A node is closing: its faults go, its stalls letting their requests go first (a close flushes, and must not wait on one). */
  dropNode(node: BlockNode): void {
    if (!node.faults) return;
    for (const [id, n] of this.nodes) if (n.node === node) this.remove(id);
  }

  /** Lets the requests a stall holds go; it holds no more (it stays listed, spent). */
  release(id: string): void {
    const n = this.nodes.get(id);
    if (!n) throw notFound(id);
    if (n.fault.spec.type !== 'stall') throw invalid(`Fault '${id}' is not a stall`);
    n.fault.release();
  }

  /** Every fault, in the order armed. */
  list(): FaultState[] {
    this.prune();
    const out: Array<[string, FaultState]> = [];
    for (const [id, n] of this.nodes) out.push([id, n.fault.state(n.node.nodeName)]);
    for (const [id, c] of this.commands) {
      const limit = c.spec.count ?? 1;
      out.push([id, { id, type: 'qmp-error', command: c.spec.command, matched: c.matched, hits: c.hits, spent: limit !== 0 && c.hits >= limit }]);
    }
    return out.sort((a, b) => this.armed.get(a[0])! - this.armed.get(b[0])!).map(([, s]) => s);
  }

  /** The error a call of `command` answers with now, if a fault says so (the call is counted). */
  commandFault(command: string): { errorClass: string; desc: string } | undefined {
    for (const c of this.commands.values()) {
      if (c.spec.command !== command) continue;
      const limit = c.spec.count ?? 1;
      c.matched++;
      if (limit !== 0 && c.hits >= limit) continue;
      c.hits++;
      this.onFired?.({ id: c.id, type: 'qmp-error', command, hits: c.hits });
      return { errorClass: c.spec.errorClass, desc: c.spec.desc };
    }
    return undefined;
  }

  /**
   * A job reported progress: a job-progress crash fault on a node the job
   * uses fires once the progress reaches its bytes.
   */
  jobProgress(job: string, uses: (node: BlockNode) => boolean, progress: number): void {
    if (this.nodes.size === 0) return;
    for (const { node, fault } of this.nodes.values()) {
      const s = fault.spec;
      if (s.type !== 'crash' || s.point !== 'job-progress' || fault.spent || !uses(node)) continue;
      fault.matched++;
      if (progress < (s.bytes ?? 0)) continue;
      fault.hits++;
      fault.spent = true;
      this.onFired?.({ id: fault.id, type: 'crash', node: node.nodeName, job, progress, hits: fault.hits });
      this.exit(s.status ?? 137);
    }
  }

  /** Disarms everything, letting stalled requests go (the daemon's shutdown must not wait on them). */
  clear(): void {
    for (const id of [...this.nodes.keys(), ...this.commands.keys()]) this.remove(id);
  }

  private newId(id: string | undefined): string {
    if (id !== undefined) {
      if (id === '') throw invalid("Parameter 'id' must not be empty");
      if (this.nodes.has(id) || this.commands.has(id)) throw invalid(`Fault '${id}' already exists`);
      this.armed.set(id, this.seq++);
      return id;
    }
    let key: string;
    do key = `fault${this.generated++}`;
    while (this.nodes.has(key) || this.commands.has(key));
    this.armed.set(key, this.seq++);
    return key;
  }

  /** Faults of nodes that were closed (blockdev-del) go with them. */
  private prune(): void {
    for (const [id, n] of this.nodes) {
      if (!n.node.isClosed) continue;
      this.nodes.delete(id);
      this.armed.delete(id);
    }
  }

}

/** Checks what the schema cannot: ranges of numbers and the members a kind needs. */
function checkSpec(s: FaultSpec): void {
  const positive = (name: string, v: number | undefined) => {
    if (v !== undefined && !(v >= 1)) throw invalid(`Parameter '${name}' expects a value of at least 1`);
  };
  const nonNegative = (name: string, v: number | undefined) => {
    if (v !== undefined && !(v >= 0)) throw invalid(`Parameter '${name}' expects a non-negative value`);
  };
  if (s.type === 'enospc-after') return nonNegative('bytes', s.bytes);
  positive('nth', s.nth);
  positive('count', s.count);
  nonNegative('offset', s.offset);
  positive('length', s.length);
  if (s.length !== undefined && s.offset === undefined) throw invalid("Parameter 'length' needs 'offset'");
  if (s.type === 'latency') nonNegative('ms', s.ms);
  if (s.type === 'torn-write') nonNegative('bytes', s.bytes);
  if (s.type === 'crash') {
    nonNegative('status', s.status);
    if (s.status !== undefined && s.status > 255) throw invalid("Parameter 'status' expects a value below 256");
    const counted = s.point === 'after-bytes-written' || s.point === 'job-progress';
    if (counted && s.bytes === undefined) throw invalid(`Parameter 'bytes' is missing (crash point ${s.point})`);
    if (!counted && s.bytes !== undefined) throw invalid("Parameter 'bytes' is only for crash points after-bytes-written and job-progress");
  }
}
