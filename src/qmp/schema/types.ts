/**
 * The QAPI type language, as TypeScript values. A schema module is a table
 * of these (see control.ts); from the same table come
 *  - argument validation with QEMU 7.2's error texts (QObject input visitor,
 *    qapi/qobject-input-visitor.c and qapi/qapi-visit-core.c),
 *  - introspection (`query-qmp-schema`, introspect.ts),
 *  - the TypeScript type of a command's arguments (`Infer<typeof T>`).
 */
import { QmpError } from '../error.js';
import { firstLeftover } from '../ghash-order.js';
import { IntegralDouble } from '../json-parser.js';

/** Where a visit is: member names and list indexes from the arguments object down. */
export type Path = ReadonlyArray<string | number>;

/**
 * QEMU's full_name(): "a.b[2].c"; the top-level object itself is
 * '<anonymous>'.
 */
export function fullName(path: Path): string {
  let s = '';
  for (const seg of path) s += typeof seg === 'number' ? `[${seg}]` : s === '' ? seg : `.${seg}`;
  return s === '' ? '<anonymous>' : s;
}

/** The bare name QEMU passes to some checks (enum values, integer ranges): the last member name, 'null' for a list element. */
export function bareName(path: Path): string {
  const last = path[path.length - 1];
  return typeof last === 'string' ? last : 'null';
}

export function typeError(path: Path, expected: string): QmpError {
  return new QmpError('GenericError', `Invalid parameter type for '${fullName(path)}', expected: ${expected}`);
}

/** Builds introspection entries (SchemaInfo) and hands out QEMU's masked type names. */
export interface Introspector {
  /** The name to use for a type in the schema; defines it (once) via `define`. */
  ref(type: QType<unknown>, define: (name: string) => Record<string, unknown>): string;
}

export abstract class QType<T> {
  /** Phantom: the TypeScript type of a validated value. */
  declare readonly _type: T;
  constructor(readonly name: string) {}
  /** Validates (and normalises) a value from the wire; throws QmpError with QEMU's text. */
  abstract visit(value: unknown, path: Path): T;
  /** This type's name in `query-qmp-schema`. */
  abstract introspect(intro: Introspector): string;
}

export type Infer<Q> = Q extends QType<infer T> ? T : never;

const JSON_TYPE = { str: 'string', int: 'int', number: 'number', bool: 'boolean', null: 'null', any: 'value' } as const;

class Builtin<T> extends QType<T> {
  constructor(
    name: keyof typeof JSON_TYPE,
    private readonly check: (v: unknown, path: Path) => T,
  ) {
    super(name);
  }
  visit(value: unknown, path: Path): T {
    return this.check(value, path);
  }
  introspect(intro: Introspector): string {
    return intro.ref(this, (name) => ({ name, 'meta-type': 'builtin', 'json-type': JSON_TYPE[this.name as keyof typeof JSON_TYPE] }));
  }
}

/** A JSON object of the parsed tree (an IntegralDouble is a number, not an object). */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof IntegralDouble);
}

/** An integer as the wire layer gives it: a safe JS integer or a bigint. */
function asInteger(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && !Object.is(v, -0)) return BigInt(v);
  return undefined;
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

/**
 * A 64-bit integer as handlers get it: a number while that is exact
 * (|i| < 2^53), else the bigint itself. QEMU's messages print such values
 * digit for digit and its checks (a multiple of 512, negative as int64)
 * look at every bit, so rounding to a double would change both.
 */
export type Int64 = number | bigint;

function exact(i: bigint): Int64 {
  return i >= -9007199254740991n && i <= 9007199254740991n ? Number(i) : i;
}

/** The value as a bigint (for 64-bit arithmetic and checks). */
export function big(v: Int64): bigint {
  return typeof v === 'bigint' ? v : BigInt(v);
}

/** Signed integers: int64 first ("expected: integer"), then the narrower range (QEMU's visit_type_intN). */
function signedBig(bits: number, cname: string): (v: unknown, path: Path) => bigint {
  const min = -(1n << BigInt(bits - 1));
  const max = (1n << BigInt(bits - 1)) - 1n;
  return (v, path) => {
    const i = asInteger(v);
    if (i === undefined || i < INT64_MIN || i > INT64_MAX) throw typeError(path, 'integer');
    if (i < min || i > max) throw new QmpError('GenericError', `Parameter '${bareName(path)}' expects ${cname}`);
    return i;
  };
}

/**
 * Unsigned integers: anything not an integer is "expects uint64" (with the
 * full name); negative int64 values are accepted and wrap, for backward
 * compatibility, as QEMU does; then the narrower range with the bare name.
 */
function unsignedBig(bits: number, cname: string): (v: unknown, path: Path) => bigint {
  const max = (1n << BigInt(bits)) - 1n;
  return (v, path) => {
    let i = asInteger(v);
    if (i === undefined || i > UINT64_MAX || i < INT64_MIN) throw new QmpError('GenericError', `Parameter '${fullName(path)}' expects uint64`);
    if (i < 0n) i += 1n << 64n;
    if (i > max) throw new QmpError('GenericError', `Parameter '${bareName(path)}' expects ${cname}`);
    return i;
  };
}

/** Up to 32 bits: always an exact number. */
const narrow = (check: (v: unknown, path: Path) => bigint): QType<number> => new Builtin('int', (v, path) => Number(check(v, path)));
/** 64 bits: exact, a bigint where a number would round (see Int64). */
const wide = (check: (v: unknown, path: Path) => bigint): QType<Int64> => new Builtin('int', (v, path) => exact(check(v, path)));

export const str: QType<string> = new Builtin('str', (v, path) => {
  if (typeof v !== 'string') throw typeError(path, 'string');
  return v;
});
export const int = wide(signedBig(64, 'int64_t'));
export const int8 = narrow(signedBig(8, 'int8_t'));
export const int16 = narrow(signedBig(16, 'int16_t'));
export const int32 = narrow(signedBig(32, 'int32_t'));
export const int64 = int;
export const uint8 = narrow(unsignedBig(8, 'uint8_t'));
export const uint16 = narrow(unsignedBig(16, 'uint16_t'));
export const uint32 = narrow(unsignedBig(32, 'uint32_t'));
export const uint64 = wide(unsignedBig(64, 'uint64_t'));
/** QAPI 'size': a uint64 from QMP; a distinct value so keyval parsing can accept suffixes (1G) where QEMU does. */
export const size = wide(unsignedBig(64, 'uint64_t'));
export const number: QType<number> = new Builtin('number', (v, path) => {
  if (typeof v === 'number') return v;
  if (v instanceof IntegralDouble) return v.value;
  if (typeof v === 'bigint') return Number(v);
  throw typeError(path, 'number');
});
export const bool: QType<boolean> = new Builtin('bool', (v, path) => {
  if (typeof v !== 'boolean') throw typeError(path, 'boolean');
  return v;
});
export const nul: QType<null> = new Builtin('null', (v, path) => {
  if (v !== null) throw typeError(path, 'null');
  return null;
});
export const any: QType<unknown> = new Builtin('any', (v) => v);

export class EnumType<V extends string> extends QType<V> {
  constructor(
    name: string,
    readonly values: readonly V[],
  ) {
    super(name);
  }
  visit(value: unknown, path: Path): V {
    // QEMU visits an enum as a string first.
    if (typeof value !== 'string') throw typeError(path, 'string');
    if (!(this.values as readonly string[]).includes(value)) {
      throw new QmpError('GenericError', `Parameter '${bareName(path)}' does not accept value '${value}'`);
    }
    return value as V;
  }
  introspect(intro: Introspector): string {
    return intro.ref(this, (name) => ({
      name,
      'meta-type': 'enum',
      values: [...this.values],
      members: this.values.map((v) => ({ name: v })),
    }));
  }
}

export function enumType<const V extends string>(name: string, values: readonly V[]): EnumType<V> {
  return new EnumType(name, values);
}

export class ArrayType<T> extends QType<T[]> {
  constructor(readonly element: QType<T>) {
    super(`${element.name}List`);
  }
  visit(value: unknown, path: Path): T[] {
    if (!Array.isArray(value)) throw typeError(path, 'array');
    return value.map((v, i) => this.element.visit(v, [...path, i]));
  }
  introspect(intro: Introspector): string {
    const element = this.element.introspect(intro);
    return intro.ref(this, () => ({ name: `[${element}]`, 'meta-type': 'array', 'element-type': element }));
  }
}

export function array<T>(element: QType<T>): ArrayType<T> {
  return new ArrayType(element);
}

/** Members as QAPI writes them: a leading '*' marks an optional member. */
export type Members = Record<string, QType<any>>;
type Required<M extends Members> = { [K in keyof M as K extends `*${string}` ? never : K]: Infer<M[K]> };
type Optional<M extends Members> = { [K in keyof M as K extends `*${infer R}` ? R : never]?: Infer<M[K]> };
export type InferMembers<M extends Members> = Required<M> & Optional<M>;

interface Member {
  name: string;
  optional: boolean;
  type: QType<unknown>;
}

function parseMembers(members: Members): Member[] {
  return Object.entries(members).map(([k, type]) => ({ name: k.replace(/^\*/, ''), optional: k.startsWith('*'), type }));
}

export function introspectMembers(intro: Introspector, members: readonly Member[]): Record<string, unknown>[] {
  return members.map((m) => ({ name: m.name, type: m.type.introspect(intro), ...(m.optional ? { default: null } : {}) }));
}

/** Visits the members of a dict; `extra` members (a union's variant) are visited after, then leftovers are refused. */
function visitMembers(dict: Record<string, unknown>, path: Path, members: readonly Member[], seen: Set<string>, out: Record<string, unknown>): void {
  for (const m of members) {
    seen.add(m.name);
    if (!Object.hasOwn(dict, m.name)) {
      if (!m.optional) throw new QmpError('GenericError', `Parameter '${fullName([...path, m.name])}' is missing`);
      continue;
    }
    out[m.name] = m.type.visit(dict[m.name], [...path, m.name]);
  }
}

function checkLeftovers(dict: Record<string, unknown>, path: Path, seen: Set<string>): void {
  const keys = Object.keys(dict);
  const left = keys.filter((k) => !seen.has(k));
  if (left.length === 0) return;
  // With several, QEMU names the first in its hash table's order (ghash-order.ts); `seen` is in visiting order.
  const k = left.length === 1 ? left[0]! : firstLeftover(keys, [...seen].filter((m) => Object.hasOwn(dict, m)))!;
  throw new QmpError('GenericError', `Parameter '${fullName([...path, k])}' is unexpected`);
}

function asDict(value: unknown, path: Path): Record<string, unknown> {
  if (!isJsonObject(value)) throw typeError(path, 'object');
  return value as Record<string, unknown>;
}

export class StructType<M extends Members> extends QType<InferMembers<M>> {
  readonly members: readonly Member[];
  constructor(name: string, members: M) {
    super(name);
    this.members = parseMembers(members);
  }
  visit(value: unknown, path: Path): InferMembers<M> {
    const dict = asDict(value, path);
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    visitMembers(dict, path, this.members, seen, out);
    checkLeftovers(dict, path, seen);
    return out as InferMembers<M>;
  }
  introspect(intro: Introspector): string {
    return intro.ref(this, (name) => ({ name, 'meta-type': 'object', members: introspectMembers(intro, this.members) }));
  }
}

export function struct<M extends Members>(name: string, members: M): StructType<M> {
  return new StructType(name, members);
}

/**
 * The arguments of a command QAPI does not generate code for ('gen':
 * false, device_add): introspection shows the declared members, and the
 * handler takes the object as it came, any key, unchecked.
 */
export class OpenArgsType<M extends Members> extends QType<Record<string, unknown>> {
  private readonly declared: StructType<M>;
  constructor(name: string, members: M) {
    super(name);
    this.declared = new StructType(name, members);
  }
  visit(value: unknown, path: Path): Record<string, unknown> {
    return asDict(value, path);
  }
  introspect(intro: Introspector): string {
    return this.declared.introspect(intro);
  }
}

export function openArgs<M extends Members>(name: string, members: M): OpenArgsType<M> {
  return new OpenArgsType(name, members);
}

/** The empty object type: QEMU's "0" in introspection, for commands without arguments or return value. */
export const EMPTY = struct('q_empty', {});

type UnionValue<B extends Members, D extends keyof InferMembers<B>, V extends Record<string, StructType<any>>> = InferMembers<B> &
  ({ [K in keyof V]: { [P in D]: K } & Infer<V[K]> }[keyof V] | Record<never, never>);

/**
 * A flat union: the base's members, then the members of the variant the
 * discriminator (an enum member of the base) selects. Enum values without a
 * variant have no further members.
 */
export class UnionType<B extends Members, D extends keyof InferMembers<B> & string, V extends Record<string, StructType<any>>> extends QType<
  UnionValue<B, D, V>
> {
  readonly base: readonly Member[];
  constructor(
    name: string,
    base: B,
    readonly discriminator: D,
    readonly variants: V,
  ) {
    super(name);
    this.base = parseMembers(base);
  }
  visit(value: unknown, path: Path): UnionValue<B, D, V> {
    const dict = asDict(value, path);
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    visitMembers(dict, path, this.base, seen, out);
    const variant = this.variants[out[this.discriminator] as string];
    if (variant) visitMembers(dict, path, variant.members, seen, out);
    checkLeftovers(dict, path, seen);
    return out as UnionValue<B, D, V>;
  }
  introspect(intro: Introspector): string {
    return intro.ref(this, (name) => ({
      name,
      'meta-type': 'object',
      members: introspectMembers(intro, this.base),
      tag: this.discriminator,
      variants: [...Object.entries(this.variants).map(([c, t]) => ({ case: c, type: t.introspect(intro) })), ...this.emptyCases().map((c) => ({ case: c, type: EMPTY.introspect(intro) }))],
    }));
  }
  /** Tag values without a variant: QEMU's introspection lists them after the declared ones, as the empty object ("0"). */
  private emptyCases(): string[] {
    let tag = this.base.find((m) => m.name === this.discriminator)?.type;
    if (tag instanceof LazyType) tag = tag.resolve();
    return tag instanceof EnumType ? (tag.values as readonly string[]).filter((v) => !Object.hasOwn(this.variants, v)) : [];
  }
}

export function union<B extends Members, D extends keyof InferMembers<B> & string, V extends Record<string, StructType<any>>>(
  name: string,
  base: B,
  discriminator: D,
  variants: V,
): UnionType<B, D, V> {
  return new UnionType(name, base, discriminator, variants);
}

/**
 * An alternate: one of several types told apart by JSON type (object,
 * string, number, boolean, null), e.g. BlockdevRef = options | node name.
 * A value of no listed JSON type is "Invalid parameter type …, expected:
 * <alternate name>".
 */
export class AlternateType<T> extends QType<T> {
  constructor(
    name: string,
    readonly choices: ReadonlyArray<QType<any>>,
  ) {
    super(name);
  }
  private jsonKind(t: QType<unknown>): string {
    if (t instanceof LazyType) return this.jsonKind(t.resolve());
    if (t instanceof StructType || t instanceof UnionType) return 'object';
    if (t instanceof EnumType || t === str) return 'string';
    if (t === bool) return 'boolean';
    if (t === nul) return 'null';
    return 'number';
  }
  visit(value: unknown, path: Path): T {
    const kind =
      value === null ? 'null'
      : value instanceof IntegralDouble ? 'number'
      : typeof value === 'object' && !Array.isArray(value) ? 'object'
      : typeof value === 'string' ? 'string'
      : typeof value === 'boolean' ? 'boolean'
      : typeof value === 'number' || typeof value === 'bigint' ? 'number'
      : 'other';
    const choice = this.choices.find((c) => this.jsonKind(c) === kind);
    if (!choice) throw new QmpError('GenericError', `Invalid parameter type for '${bareName(path)}', expected: ${this.name}`);
    return choice.visit(value, path) as T;
  }
  introspect(intro: Introspector): string {
    return intro.ref(this, (name) => ({ name, 'meta-type': 'alternate', members: this.choices.map((c) => ({ type: c.introspect(intro) })) }));
  }
}

export function alternate<C extends ReadonlyArray<QType<any>>>(name: string, choices: C): AlternateType<Infer<C[number]>> {
  return new AlternateType(name, choices);
}

/**
 * A reference to a type defined later, for recursive schemas
 * (BlockdevOptions contains BlockdevRef, which contains BlockdevOptions).
 */
export class LazyType<T> extends QType<T> {
  private resolved: QType<T> | undefined;
  constructor(private readonly get: () => QType<T>) {
    super('lazy');
  }
  resolve(): QType<T> {
    this.resolved ??= this.get();
    return this.resolved;
  }
  visit(value: unknown, path: Path): T {
    return this.resolve().visit(value, path);
  }
  introspect(intro: Introspector): string {
    return this.resolve().introspect(intro);
  }
}

export function lazy<T>(get: () => QType<T>): LazyType<T> {
  return new LazyType(get);
}
