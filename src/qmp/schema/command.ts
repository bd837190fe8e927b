import { EMPTY, type Infer, type Members, QType, StructType, struct } from './types.js';

/** A QMP command as the schema declares it: its argument type, its return type, its flags. */
export interface CommandDef<A extends QType<any> = QType<any>, R extends QType<any> | undefined = QType<any> | undefined, N extends string = string> {
  /** A literal type, so the typed client (typed.ts) can map names to argument and return types. */
  readonly name: N;
  readonly args: A;
  /** Undefined: the command returns `{}` (QEMU's commands without 'returns'). */
  readonly returns: R;
  readonly allowOob: boolean;
  /** Allowed before `qmp_capabilities` (only qmp_capabilities itself, as in QEMU). */
  readonly allowPreconfig: boolean;
  /** QAPI features shown by introspection (e.g. 'deprecated'). */
  readonly features?: readonly string[];
}

export interface EventDef<D extends QType<any> | undefined = QType<any> | undefined, N extends string = string> {
  readonly name: N;
  readonly data: D;
}

type ArgsOf<A> = A extends QType<any> ? A : A extends Members ? StructType<A> : StructType<{}>;

/**
 * Declares a command. `args` is either a member table (QAPI's inline
 * 'data': {…}, which QEMU names `q_obj_<command>-arg`) or a named type
 * (QAPI's 'boxed' or a named struct/union).
 */
export function command<const N extends string, const A extends Members | QType<any> | undefined = undefined, R extends QType<any> | undefined = undefined>(
  name: N,
  opts: { args?: A; returns?: R; allowOob?: boolean; allowPreconfig?: boolean; features?: readonly string[] } = {},
): CommandDef<ArgsOf<A>, R, N> {
  const a = opts.args;
  const args = (a === undefined ? EMPTY : a instanceof QType ? a : struct(`q_obj_${name}-arg`, a as Members)) as ArgsOf<A>;
  return { name, args, returns: opts.returns as R, allowOob: opts.allowOob ?? false, allowPreconfig: opts.allowPreconfig ?? false, ...(opts.features ? { features: opts.features } : {}) };
}

export function event<const N extends string, const D extends Members | QType<any> | undefined = undefined>(name: N, data?: D): EventDef<D extends undefined ? undefined : ArgsOf<D>, N> {
  const d = data === undefined ? undefined : data instanceof QType ? data : struct(`q_obj_${name}-arg`, data as Members);
  return { name, data: d as D extends undefined ? undefined : ArgsOf<D> };
}

/** The TypeScript type of a command's validated arguments. */
export type ArgsType<C extends CommandDef> = Infer<C['args']>;
/** What a command handler resolves to: the declared return type, or nothing. */
export type ReturnType<C extends CommandDef> = C['returns'] extends QType<infer R> ? R : void;
/** The TypeScript type of an event's data. */
export type EventData<E extends EventDef> = E['data'] extends QType<infer D> ? D : undefined;
