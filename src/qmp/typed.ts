/**
 * The QMP commands and events blockemu serves, as TypeScript types for
 * `QmpClient`: derived from the schema tables (the same ones that validate
 * arguments and answer query-qmp-schema), so they cannot drift from what
 * the daemon accepts. Type-only imports: the client loads no schema at run
 * time. test/qmp/typed-schema.test.ts checks these lists against the
 * daemon's query-commands and query-qmp-schema.
 */
import type { COMMAND_MODULES } from './command-modules.js';
import type { BLOCK_JOB_COMMANDS } from './schema/block-jobs.js';
import type { ArgsType, CommandDef, EventData } from './schema/command.js';
import type { CONTROL_COMMANDS } from './schema/control.js';
import type { DAEMON_EVENTS } from './schema/events.js';
import type { JOB_COMMANDS } from './schema/job.js';
import type { QType } from './schema/types.js';

type IsAny<T> = 0 extends 1 & T ? true : false;

/**
 * A schema type as it travels in JSON: 64-bit integers, which handlers see
 * as `number | bigint` (exact beyond 2^53), are plain numbers to a client
 * (JSON.parse gives numbers; JSON.stringify refuses bigints).
 */
export type Wire<T> =
  IsAny<T> extends true ? any
  : T extends bigint ? never
  : T extends number ? number
  : T extends string | boolean | null | undefined ? T
  : T extends ReadonlyArray<infer E> ? Array<Wire<E>>
  : T extends object ? { [K in keyof T]: Wire<T[K]> }
  : T;

type AllCommandDefs =
  | (typeof CONTROL_COMMANDS)[number]
  | (typeof JOB_COMMANDS)[number]
  | (typeof BLOCK_JOB_COMMANDS)[number]
  | (typeof COMMAND_MODULES)[number]['defs'][number];

type AllEventDefs = (typeof DAEMON_EVENTS)[number];

/** A command without 'returns' answers `{}`. */
type WireReturn<C extends CommandDef> = C['returns'] extends QType<infer R> ? Wire<R> : Record<string, never>;

/** Every command blockemu serves: its arguments and what it returns. */
export type QmpCommands = { [C in AllCommandDefs as C['name']]: { args: Wire<ArgsType<C>>; returns: WireReturn<C> } };
export type QmpCommandName = keyof QmpCommands;
export type QmpArgs<K extends QmpCommandName> = QmpCommands[K]['args'];
export type QmpReturn<K extends QmpCommandName> = QmpCommands[K]['returns'];

/** Every event blockemu emits, by name: its `data`. */
export type QmpEvents = { [E in AllEventDefs as E['name']]: Wire<EventData<E>> };
export type QmpEventName = keyof QmpEvents;

interface Timestamp {
  seconds: number;
  microseconds: number;
}

/** An event as received, whatever its name. */
export interface UntypedQmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: Timestamp;
}

/**
 * An event: `QmpEvent<'BLOCK_JOB_COMPLETED'>` has that event's typed
 * `data`; a union of names gives a union to narrow by `event`; a name the
 * schema does not know (qemu-storage-daemon's own) gives untyped data.
 */
export type QmpEvent<N extends string = string> =
  string extends N ? UntypedQmpEvent
  : N extends QmpEventName ? { event: N; data: QmpEvents[N]; timestamp: Timestamp }
  : { event: N; data?: Record<string, unknown>; timestamp: Timestamp };

/** Per-call options of `execute`. */
export interface CallOptions {
  /** Reject (naming the command) when no reply came within this many ms; the connection stays usable and a late reply is dropped. */
  timeoutMs?: number;
}

/** `execute`'s parameters after the name: the arguments may be left out when none is required. */
export type ExecuteRest<K extends QmpCommandName> = {} extends QmpArgs<K> ? [args?: QmpArgs<K>, opts?: CallOptions] : [args: QmpArgs<K>, opts?: CallOptions];

/** A name the schema does not know (never for a known one, so the typed overload is the only one that applies to it). */
export type UnknownCommand<N extends string> = N extends QmpCommandName ? never : N;
