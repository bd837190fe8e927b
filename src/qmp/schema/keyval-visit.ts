/**
 * QEMU's keyval input visitor (qobject_input_visitor_new_keyval in
 * qapi/qobject-input-visitor.c): a tree from keyval_parse, whose leaves
 * are all strings, visited against a schema type. Each string is converted
 * to what the schema expects where it sits — integers by qemu_strtoi64/u64
 * (0x hex, 0 octal), sizes by qemu_strtosz (1G, 1.5k), numbers by strtod,
 * booleans from on/off/yes/no/true/false/y/n — and objects, lists, unions
 * and alternates are walked in schema order, so the first error is the one
 * QEMU reports, with its texts and its names ("a.0.b" for list elements).
 */
import { strtodFinite, strtoi64, strtosz, strtou64 } from '../cutils.js';
import { QmpError } from '../error.js';
import { firstLeftover } from '../ghash-order.js';
import {
  AlternateType,
  any,
  ArrayType,
  bareName,
  bool,
  EnumType,
  int,
  int16,
  int32,
  int8,
  LazyType,
  nul,
  number,
  type Path,
  QType,
  size,
  str,
  StructType,
  uint16,
  uint32,
  uint64,
  uint8,
  UnionType,
} from './types.js';

const err = (desc: string) => new QmpError('GenericError', desc);

/** full_name() in keyval mode: list elements are ".N", not "[N]". */
export function keyvalName(path: Path): string {
  return path.length === 0 ? '<anonymous>' : path.map(String).join('.');
}

const SIGNED = new Set<QType<unknown>>([int, int8, int16, int32]);
const UNSIGNED = new Set<QType<unknown>>([uint8, uint16, uint32, uint64]);
const BOOLS = new Map([
  ['on', true],
  ['yes', true],
  ['true', true],
  ['y', true],
  ['off', false],
  ['no', false],
  ['false', false],
  ['n', false],
]);

type Dict = Record<string, unknown>;
type Member = StructType<any>['members'][number];

const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Visits `tree` (keyval_parse's result, or any tree of strings, lists and
 * objects) as `type`; returns the value the QObject visitor would have
 * produced for the equivalent typed JSON. Throws QmpError as QEMU fails.
 */
export function visitKeyval<T>(type: QType<T>, tree: Record<string, unknown>, path: Path = []): T {
  return visit(type, tree, path) as T;
}

/** The JSON type an alternate branch takes; in keyval input only string, object and array can occur. */
function branchKind(t: QType<unknown>): string {
  if (t instanceof LazyType) return branchKind(t.resolve());
  if (t instanceof StructType || t instanceof UnionType) return 'object';
  if (t instanceof ArrayType) return 'array';
  if (t instanceof EnumType || t === str) return 'string';
  return 'scalar';
}

function visit(t: QType<unknown>, node: unknown, path: Path): unknown {
  if (t instanceof LazyType) return visit(t.resolve(), node, path);
  // qobject_input_get_object: absent is "missing", whatever the type.
  if (node === undefined) throw err(`Parameter '${keyvalName(path)}' is missing`);
  if (t instanceof StructType) return visitObject(node, path, t.members, []);
  if (t instanceof UnionType) {
    return visitObject(node, path, t.base, [(out) => t.variants[out[t.discriminator] as string]?.members ?? []]);
  }
  if (t instanceof ArrayType) {
    if (!Array.isArray(node)) throw err(`Invalid parameter type for '${keyvalName(path)}', expected: array`);
    return node.map((e, i) => visit(t.element, e, [...path, i]));
  }
  if (t instanceof AlternateType) {
    // The generated visit switches on the QObject type; every keyval scalar is a QString.
    const kind = typeof node === 'string' ? 'string' : Array.isArray(node) ? 'array' : isDict(node) ? 'object' : 'other';
    const choice = t.choices.find((c) => branchKind(c) === kind);
    if (!choice) throw err(`Invalid parameter type for '${bareName(path)}', expected: ${t.name}`);
    return visit(choice, node, path);
  }
  if (t === any) return node;
  if (t === nul) throw err(`Invalid parameter type for '${keyvalName(path)}', expected: null`);
  return visitScalar(t, node, path);
}

/** qobject_input_get_keyval, then the type's conversion. */
function visitScalar(t: QType<unknown>, node: unknown, path: Path): unknown {
  const name = keyvalName(path);
  if (typeof node !== 'string') {
    if (isDict(node) || Array.isArray(node)) throw err(`Parameters '${name}.*' are unexpected`);
    throw err(`Internal error: parameter ${name} invalid`);
  }
  if (t === str) return node;
  if (t instanceof EnumType) return t.visit(node, path);
  if (t === bool) {
    const b = BOOLS.get(node);
    if (b === undefined) throw err(`Parameter '${name}' expects 'on' or 'off'`);
    return b;
  }
  if (t === number) {
    const n = strtodFinite(node);
    if (n === undefined) throw err(`Invalid parameter type for '${name}', expected: number`);
    return n;
  }
  if (t === size) {
    const n = strtosz(node);
    if (n === undefined) throw err(`Parameter '${name}' expects size`);
    return t.visit(n, path);
  }
  if (SIGNED.has(t) || UNSIGNED.has(t)) {
    const n = SIGNED.has(t) ? strtoi64(node) : strtou64(node);
    if (n === undefined) throw err(`Parameter '${name}' expects integer`);
    // The narrower ranges (int8_t, uint32_t, …) are checked by the type, with the bare name as QEMU does.
    return t.visit(n, path);
  }
  // A type this walker does not know: its own rules, on the string.
  return t.visit(node, path);
}

/**
 * visit_start_struct, the members in schema order (a union's variant
 * members chosen once the base is visited), then check_struct: the first
 * key left over is the one QEMU's hash table yields.
 */
function visitObject(node: unknown, path: Path, base: readonly Member[], more: ReadonlyArray<(out: Dict) => readonly Member[]>): Dict {
  if (!isDict(node)) throw err(`Invalid parameter type for '${keyvalName(path)}', expected: object`);
  const out: Dict = {};
  const consumed: string[] = [];
  const visitMembers = (members: readonly Member[]) => {
    for (const m of members) {
      if (!Object.hasOwn(node, m.name)) {
        if (!m.optional) throw err(`Parameter '${keyvalName([...path, m.name])}' is missing`);
        continue;
      }
      consumed.push(m.name);
      out[m.name] = visit(m.type, node[m.name], [...path, m.name]);
    }
  };
  visitMembers(base);
  for (const f of more) visitMembers(f(out));
  const keys = Object.keys(node);
  if (keys.length > consumed.length) {
    const left = keys.filter((k) => !consumed.includes(k));
    const k = left.length === 1 ? left[0]! : firstLeftover(keys, consumed)!;
    throw err(`Parameter '${keyvalName([...path, k])}' is unexpected`);
  }
  return out;
}
