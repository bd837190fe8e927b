import type { CrashPoint, FaultIoType, FaultSpec, FaultState } from '../../blockdev/faults/fault.js';
import type { BlockGraph } from '../../blockdev/graph.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError, type QmpErrorClass } from '../error.js';
import { faultAdd, type FaultOptions, faultRelease, faultRemove, qmpFaultAdd, queryFaults } from '../schema/blockemu-faults.js';
import type { Infer } from '../schema/types.js';

type FaultArgs = Infer<typeof FaultOptions>;

/** The schema's fault description (QMP, --fault, startDaemon) as the block layer takes it. */
export function faultSpec(a: FaultArgs): FaultSpec {
  // The variants' members, read by name: sizes may come as bigints, the block layer counts in numbers.
  const r = a as Record<string, unknown>;
  const m: Record<string, number> = {};
  for (const k of ['nth', 'count', 'offset', 'length'] as const) if (r[k] !== undefined) m[k] = Number(r[k]);
  const iotype = r['iotype'] as FaultIoType | undefined;
  switch (a.type) {
    case 'error':
      return { type: 'error', iotype: iotype ?? 'any', errno: r['errno'] as string, ...m };
    case 'enospc-after':
      return { type: 'enospc-after', bytes: Number(r['bytes']) };
    case 'latency':
      return { type: 'latency', iotype: iotype ?? 'any', ms: Number(r['ms']), ...m };
    case 'stall':
      return { type: 'stall', iotype: iotype ?? 'any', ...m };
    case 'torn-write':
      return { type: 'torn-write', bytes: Number(r['bytes']), ...(r['errno'] !== undefined ? { errno: r['errno'] as string } : {}), ...m };
    case 'crash':
      return {
        type: 'crash',
        point: r['point'] as CrashPoint,
        iotype: iotype ?? (r['point'] === 'after-bytes-written' ? 'write' : 'any'),
        ...(r['status'] !== undefined ? { status: Number(r['status']) } : {}),
        ...(r['bytes'] !== undefined ? { bytes: Number(r['bytes']) } : {}),
        ...m,
      };
  }
}

/** Arms one fault described by the schema (the command, --fault and startDaemon's faults all come here). */
export function addFault(graph: BlockGraph, a: FaultArgs): string {
  return graph.faults.add(graph.findNode(a['node-name']), faultSpec(a), a.id);
}

/** A fault's state as query-faults lists it. */
function faultInfo(s: FaultState): Record<string, unknown> {
  return {
    id: s.id,
    type: s.type,
    ...(s.node !== undefined ? { 'node-name': s.node } : {}),
    ...(s.command !== undefined ? { command: s.command } : {}),
    matched: s.matched,
    hits: s.hits,
    spent: s.spent,
    ...(s.waiting !== undefined ? { waiting: s.waiting } : {}),
  };
}

/** The fault commands themselves cannot be made to fail: a scenario must always be able to disarm what it armed. */
const FAULT_COMMANDS: ReadonlySet<string> = new Set([faultAdd.name, faultRemove.name, faultRelease.name, qmpFaultAdd.name, queryFaults.name]);

export function addFaultCommands(table: CommandTable<QmpContext>): void {
  table
    .add(faultAdd, async (a, ctx) => ({ id: addFault(ctx.graph, a) }))
    .add(faultRemove, async (a, ctx) => ctx.graph.faults.remove(a.id))
    .add(faultRelease, async (a, ctx) => ctx.graph.faults.release(a.id))
    .add(qmpFaultAdd, async (a, ctx) => {
      if (!ctx.commands.get(a.command)) throw new QmpError('CommandNotFound', `The command ${a.command} has not been found`);
      if (FAULT_COMMANDS.has(a.command)) throw new QmpError('GenericError', `The command ${a.command} cannot be made to fail`);
      const spec = { command: a.command, errorClass: (a.class ?? 'GenericError') as QmpErrorClass, desc: a.desc, ...(a.count !== undefined ? { count: a.count } : {}) };
      return { id: ctx.graph.faults.addCommand(spec, a.id) };
    })
    .add(queryFaults, async (_a, ctx) => ctx.graph.faults.list().map(faultInfo) as never);
}
