import { QmpError } from './error.js';
import { AlternateType, ArrayType, bool, EnumType, int, int16, int32, int8, LazyType, number, type Path, QType, size, str, StructType, uint16, uint32, uint64, uint8, UnionType } from './schema/types.js';

const err = (desc: string) => new QmpError('GenericError', desc);
/** full_name in keyval mode: list elements are ".N", not "[N]". */
const keyvalName = (path: Path) => path.map(String).join('.') || '<anonymous>';

/** QAPI names (parse_qapi_name) or, after the first fragment, list indexes. */
const QAPI_NAME = /^(__[a-z0-9.-]+_)?[A-Za-z][A-Za-z0-9_-]*/;
const MAX_FRAGMENT = 127;

/**
 * QEMU's keyval_parse (util/keyval.c) for command-line options like
 * --blockdev: "key=value,…" with dotted keys building nested objects,
 * numeric fragments building lists (no gaps), ",," for a comma in a value,
 * the last of duplicate keys winning, and QEMU's error texts.
 */
export function parseKeyval(text: string): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  let s = 0;
  while (s < text.length) {
    const keyStart = s;
    // The key runs up to '=' or ','.
    let keyEnd = s;
    while (keyEnd < text.length && text[keyEnd] !== '=' && text[keyEnd] !== ',') keyEnd++;
    const key = text.slice(keyStart, keyEnd);
    // Fragments: validated one by one, as QEMU walks them.
    const fragments: string[] = [];
    let pos = 0;
    for (;;) {
      const rest = key.slice(pos);
      const m = pos > 0 && /^\d+/.exec(rest) ? /^\d+/.exec(rest) : QAPI_NAME.exec(rest);
      const len = m ? m[0].length : 0;
      if (len === 0 || (pos + len < key.length && key[pos + len] !== '.')) throw err(`Invalid parameter '${key}'`);
      if (len > MAX_FRAGMENT) {
        const whole = pos === 0 && len === key.length;
        throw err(`Parameter${whole ? '' : ' fragment'} '${rest.slice(0, len)}' is too long`);
      }
      fragments.push(rest.slice(0, len));
      pos += len;
      if (key[pos] !== '.') break;
      pos++;
    }
    if (text[keyEnd] !== '=') throw err(`Expected '=' after parameter '${key}'`);
    s = keyEnd + 1;
    let value = '';
    for (;;) {
      if (s >= text.length) break;
      if (text[s] === ',') {
        s++;
        if (text[s] !== ',') break;
      }
      value += text[s++];
    }
    let cur = root;
    fragments.forEach((f, i) => {
      const last = i === fragments.length - 1;
      const old = cur[f];
      const prefix = fragments.slice(0, i + 1).join('.');
      if (old !== undefined && (typeof old === 'string') !== last) throw err(`Parameters '${prefix}.*' used inconsistently`);
      if (last) cur[f] = value;
      else {
        if (old === undefined) cur[f] = {};
        cur = cur[f] as Record<string, unknown>;
      }
    });
  }
  return listify(root, '') as Record<string, unknown>;
}

/** Objects whose keys are all indexes become lists (keyval_listify). */
function listify(cur: Record<string, unknown>, prefix: string): unknown {
  let hasIndex = false;
  let hasMember = false;
  for (const [k, v] of Object.entries(cur)) {
    if (/^\d+$/.test(k)) hasIndex = true;
    else hasMember = true;
    if (typeof v === 'object' && v !== null) cur[k] = listify(v as Record<string, unknown>, `${prefix}${k}.`);
  }
  if (hasIndex && hasMember) throw err(`Parameters '${prefix}*' used inconsistently`);
  if (!hasIndex) return cur;
  const n = Object.keys(cur).length;
  const list: unknown[] = [];
  for (let i = 0; i < n; i++) {
    if (!(String(i) in cur)) throw err(`Parameter '${prefix}${i}' missing`);
    list.push(cur[String(i)]);
  }
  return list;
}

const SIGNED = new Map<QType<unknown>, [bigint, bigint]>([
  [int, [-(1n << 63n), (1n << 63n) - 1n]],
  [int8, [-128n, 127n]],
  [int16, [-32768n, 32767n]],
  [int32, [-(1n << 31n), (1n << 31n) - 1n]],
]);
const UNSIGNED = new Set<QType<unknown>>([uint8, uint16, uint32, uint64]);

/** qemu_strtoi64/u64 with base 0: decimal, 0x hex, leading-0 octal, the whole string. */
function parseInteger(s: string): bigint | undefined {
  const m = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return undefined;
  const body = m[2]!;
  const v = body.startsWith('0x') || body.startsWith('0X') ? BigInt(body) : body.length > 1 && body.startsWith('0') ? BigInt(`0o${body.slice(1)}`) : BigInt(body);
  return m[1] === '-' ? -v : v;
}

/** qemu_strtosz: a number with an optional k/M/G/T/P/E suffix (binary), fractions allowed with a suffix. */
function parseSize(s: string): number | undefined {
  const m = /^([0-9]+(?:\.[0-9]+)?|0[xX][0-9a-fA-F]+)([kKmMgGtTpPeE]|[bB])?$/.exec(s);
  if (!m) return undefined;
  const unit = { b: 0, k: 10, m: 20, g: 30, t: 40, p: 50, e: 60 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  const base = Number(m[1]);
  if (m[1]!.includes('.') && !m[2]) return undefined;
  const v = base * 2 ** unit;
  return Number.isFinite(v) && v < 2 ** 64 ? Math.floor(v) : undefined;
}

const BOOLS: Record<string, boolean> = { on: true, yes: true, true: true, y: true, off: false, no: false, false: false, n: false };

/**
 * The keyval input visitor's typing: every scalar is a string, converted to
 * what the schema expects at its place (integers, sizes with suffixes,
 * on/off booleans), with QEMU's "Parameter 'x' expects …" texts; the
 * result then goes through the schema's normal validation.
 */
export function typeKeyval(t: QType<unknown>, v: unknown, path: Path = []): unknown {
  if (t instanceof LazyType) return typeKeyval(t.resolve(), v, path);
  if (Array.isArray(v)) return t instanceof ArrayType ? v.map((e, i) => typeKeyval(t.element, e, [...path, i])) : v;
  if (typeof v === 'object' && v !== null) {
    const dict = v as Record<string, unknown>;
    if (t instanceof StructType) return typeMembers(t.members, dict, path);
    if (t instanceof UnionType) {
      const out = typeMembers(t.base, dict, path);
      const variant = t.variants[dict[t.discriminator] as string];
      return variant ? { ...out, ...typeMembers(variant.members, out, path) } : out;
    }
    if (t instanceof AlternateType) {
      const obj = t.choices.find((c) => c instanceof StructType || c instanceof UnionType || c instanceof LazyType);
      return obj ? typeKeyval(obj, v, path) : v;
    }
    return v;
  }
  if (typeof v !== 'string') return v;
  if (t instanceof AlternateType) {
    // A scalar picks the string-like branch, as QEMU's keyval visitor sees only strings.
    const choice = t.choices.find((c) => c === str || c instanceof EnumType) ?? t.choices.find((c) => c === bool || SIGNED.has(c) || UNSIGNED.has(c));
    return choice ? typeKeyval(choice, v, path) : v;
  }
  const range = SIGNED.get(t);
  if (range || UNSIGNED.has(t)) {
    const n = parseInteger(v);
    if (n === undefined || (range && (n < range[0] || n > range[1]))) throw err(`Parameter '${keyvalName(path)}' expects integer`);
    return Number(n);
  }
  if (t === size) {
    const n = parseSize(v);
    if (n === undefined) throw err(`Parameter '${keyvalName(path)}' expects size`);
    return n;
  }
  if (t === number) {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw err(`Parameter '${keyvalName(path)}' expects number`);
    return n;
  }
  if (t === bool) {
    const b = BOOLS[v];
    if (b === undefined) throw err(`Parameter '${keyvalName(path)}' expects 'on' or 'off'`);
    return b;
  }
  return v;
}

function typeMembers(members: StructType<any>['members'], dict: Record<string, unknown>, path: Path): Record<string, unknown> {
  const out: Record<string, unknown> = { ...dict };
  for (const m of members) if (Object.hasOwn(dict, m.name)) out[m.name] = typeKeyval(m.type, dict[m.name], [...path, m.name]);
  return out;
}

/**
 * A storage-daemon option argument of a QAPI type: JSON when it starts
 * with '{' (validated as QMP input), else keyval.
 */
export function parseCliObject<T>(type: QType<T>, arg: string): T {
  if (arg.trimStart().startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(arg);
    } catch (e) {
      throw err(`JSON parse error, ${(e as Error).message}`);
    }
    return type.visit(value, []);
  }
  const tree = typeKeyval(type, parseKeyval(arg));
  try {
    return type.visit(tree, []);
  } catch (e) {
    // The structural checks name list elements "[N]"; in keyval mode QEMU names them ".N".
    if (e instanceof QmpError) throw err(e.desc.replace(/'([^']*)'/, (_m, name: string) => `'${name.replace(/\[(\d+)\]/g, '.$1')}'`));
    throw e;
  }
}
