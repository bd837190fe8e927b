import type { CommandDef, EventDef } from './command.js';
import { EMPTY, type Introspector, type QType } from './types.js';

const BUILTINS = new Set(['str', 'int', 'number', 'bool', 'null', 'any']);

/**
 * `query-qmp-schema` in QEMU's introspection format (qapi/introspect.json):
 * commands and events by name, builtins by name, every other type under a
 * masked decimal name ("0" being the empty object), arrays as "[elem]".
 * Masked numbers are handed out in order of first reference, so they are
 * stable for a given schema (QEMU's are too, but clients must not rely on
 * either).
 */
export function introspectSchema(commands: readonly CommandDef[], events: readonly EventDef[]): Record<string, unknown>[] {
  const names = new Map<QType<unknown>, string>();
  const entries: Record<string, unknown>[] = [];
  let next = 0;
  const intro: Introspector = {
    ref(type, define) {
      const known = names.get(type);
      if (known !== undefined) return known;
      const masked = BUILTINS.has(type.name) && !(type === EMPTY) ? type.name : `${next++}`;
      // Reserve the name before defining, so recursive types terminate.
      names.set(type, masked);
      const entry = define(masked);
      // Array entries name themselves ("[elem]"); record that as the type's name.
      const name = entry['name'] as string;
      names.set(type, name);
      if (!entries.some((e) => e['name'] === name)) entries.push(entry);
      return name;
    },
  };
  intro.ref(EMPTY, (name) => ({ name, 'meta-type': 'object', members: [] }));
  for (const c of commands) {
    entries.push({
      name: c.name,
      'meta-type': 'command',
      'arg-type': c.args.introspect(intro),
      'ret-type': c.returns ? c.returns.introspect(intro) : '0',
      ...(c.allowOob ? { 'allow-oob': true } : {}),
      ...(c.features ? { features: c.features } : {}),
    });
  }
  for (const e of events) entries.push({ name: e.name, 'meta-type': 'event', 'arg-type': e.data ? e.data.introspect(intro) : '0' });
  return entries;
}
