import { QmpError, toQmpError } from './error.js';
import { qdictOrder } from './qdict-order.js';
import type { ArgsType, CommandDef, ReturnType } from './schema/command.js';
import { isJsonObject } from './schema/types.js';

/** A command implementation: validated arguments in, the declared return value out. */
export type Handler<C extends CommandDef, Ctx> = (args: ArgsType<C>, ctx: Ctx) => Promise<ReturnType<C>> | ReturnType<C>;

interface Entry<Ctx> {
  def: CommandDef;
  handler: (args: unknown, ctx: Ctx) => unknown;
}

/** The commands a daemon serves: each schema declaration bound to its handler. */
export class CommandTable<Ctx> {
  private readonly entries = new Map<string, Entry<Ctx>>();
  /**
   * Asked before a command's handler runs, once its arguments are valid:
   * an error to answer with instead (blockemu's qmp-fault-add), or
   * nothing. The daemon sets it.
   */
  interceptor: ((name: string) => QmpError | undefined) | undefined;

  add<C extends CommandDef>(def: C, handler: Handler<C, Ctx>): this {
    if (this.entries.has(def.name)) throw new Error(`command ${def.name} registered twice`);
    this.entries.set(def.name, { def, handler: handler as (args: unknown, ctx: Ctx) => unknown });
    return this;
  }

  /**
   * Commands whose handlers live in a module loaded when one of them is
   * first called (the daemon starts without loading what it may never
   * run). `load` gives the module's registration function, which must add
   * exactly `defs`, in that order — checked when it loads.
   */
  addLazy(defs: readonly CommandDef[], load: () => Promise<(table: CommandTable<Ctx>) => void>): this {
    let loaded: Promise<void> | undefined;
    const ensure = () =>
      (loaded ??= (async () => {
        const real = new CommandTable<Ctx>();
        (await load())(real);
        const want = defs.map((d) => d.name).join(', ');
        const got = real.defs().map((d) => d.name).join(', ');
        if (want !== got) throw new Error(`lazily loaded commands differ: declared [${want}], the module registers [${got}]`);
        for (const d of defs) this.entries.get(d.name)!.handler = real.entries.get(d.name)!.handler;
      })());
    for (const def of defs) {
      if (this.entries.has(def.name)) throw new Error(`command ${def.name} registered twice`);
      this.entries.set(def.name, {
        def,
        handler: async (args: unknown, ctx: Ctx) => {
          await ensure();
          return this.entries.get(def.name)!.handler(args, ctx);
        },
      });
    }
    return this;
  }

  get(name: string): Entry<Ctx> | undefined {
    return this.entries.get(name);
  }

  defs(): CommandDef[] {
    return [...this.entries.values()].map((e) => e.def);
  }
}

/** Where a connection is in QMP's lifecycle. */
export interface SessionState {
  /** qmp_capabilities has succeeded: all commands allowed, events delivered. */
  negotiated: boolean;
  /** The client enabled out-of-band execution. */
  oob: boolean;
}

export type Reply = { return: unknown; id?: unknown } | { error: { class: string; desc: string }; id?: unknown };

function errorReply(err: QmpError, id: unknown, hasId: boolean): Reply {
  const r: Reply = { error: { class: err.qmpClass, desc: err.desc } };
  if (hasId) r.id = id;
  return r;
}

/** What the dispatcher learned from a request before running it (for the server's queueing). */
export interface Parsed {
  oob: boolean;
}

/**
 * QEMU's qmp_dispatch for one parsed request: the envelope checks in
 * qmp_dispatch_check_obj's order and words, the negotiation rules of
 * monitor/qmp.c, argument validation through the schema, then the handler.
 * Never throws: every failure becomes an error reply (with the request's
 * id whenever the request was an object that had one).
 */
export async function dispatch<Ctx>(table: CommandTable<Ctx>, state: SessionState, request: unknown, ctx: Ctx): Promise<Reply> {
  if (!isJsonObject(request)) {
    return errorReply(new QmpError('GenericError', 'QMP input must be a JSON object'), undefined, false);
  }
  const dict = request as Record<string, unknown>;
  const hasId = Object.hasOwn(dict, 'id');
  const id = dict['id'];
  try {
    const { name, oob } = checkEnvelope(dict, state.oob);
    const entry = table.get(name);
    // Before negotiation only qmp_capabilities exists; QEMU rewrites the "not found" text.
    if (!entry || (!state.negotiated && !entry.def.allowPreconfig)) {
      if (!state.negotiated) throw new QmpError('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'");
      throw new QmpError('CommandNotFound', `The command ${name} has not been found`);
    }
    if (oob && !entry.def.allowOob) throw new QmpError('GenericError', `The command ${name} does not support OOB`);
    const args = entry.def.args.visit(dict['arguments'] ?? {}, []);
    const injected = table.interceptor?.(name);
    if (injected) throw injected;
    const ret = await entry.handler(args, ctx);
    const reply: Reply = { return: entry.def.returns ? ret : {} };
    if (hasId) reply.id = id;
    return reply;
  } catch (err) {
    return errorReply(toQmpError(err), id, hasId);
  }
}

/** Whether a request is out-of-band, judged as the server must before queueing it (errors are left to dispatch). */
export function isOobRequest(request: unknown, oobEnabled: boolean): boolean {
  return oobEnabled && isJsonObject(request) && Object.hasOwn(request, 'exec-oob');
}

function checkEnvelope(dict: Record<string, unknown>, allowOob: boolean): { name: string; oob: boolean } {
  let execKey: string | undefined;
  for (const key of qdictOrder(Object.keys(dict))) {
    const value = dict[key];
    if (key === 'execute' || (key === 'exec-oob' && allowOob)) {
      if (typeof value !== 'string') throw new QmpError('GenericError', `QMP input member '${key}' must be a string`);
      if (execKey !== undefined) throw new QmpError('GenericError', `QMP input member '${key}' clashes with '${execKey}'`);
      execKey = key;
    } else if (key === 'arguments') {
      if (!isJsonObject(value)) {
        throw new QmpError('GenericError', "QMP input member 'arguments' must be an object");
      }
    } else if (key !== 'id') {
      throw new QmpError('GenericError', `QMP input member '${key}' is unexpected`);
    }
  }
  if (execKey === undefined) throw new QmpError('GenericError', "QMP input lacks member 'execute'");
  return { name: dict[execKey] as string, oob: execKey === 'exec-oob' };
}
