/**
 * QEMU 7.2's keyval_parse (util/keyval.c): the "key=value,…" syntax of
 * qemu-storage-daemon's --blockdev, --export, --nbd-server and --monitor.
 *
 *  - dotted keys build nested objects: file.driver=file
 *  - numeric fragments build lists, with no gaps: l.0=a,l.1=b
 *  - ',,' is a comma inside a value; the last of duplicate keys wins
 *  - with an implied key, the first element may be a bare value (driver)
 *  - 'help' or '?' alone asks for help, which these options refuse
 *
 * Every leaf is a string; keyval-visit.ts converts them to what the schema
 * expects. Errors are QmpErrors carrying QEMU's exact texts.
 */
import { QmpError } from './error.js';
import { qdictOrder } from './qdict-order.js';

/** What keyval_parse returns: objects, lists and string leaves. */
export type KeyvalNode = string | KeyvalNode[] | KeyvalTree;
export type KeyvalTree = { [key: string]: KeyvalNode };

/** While parsing: a QDict-like map (insertion order kept, integer-like keys not hoisted as plain objects would). */
type Dict = Map<string, string | Dict>;

const err = (desc: string) => new QmpError('GenericError', desc);

/** key_in_cur[128]: a fragment must be shorter. */
const FRAGMENT_MAX = 127;

/** parse_qapi_name(s, false): the length of the QAPI name at the start of s, 0 if none ('__RFQDN_' prefix allowed). */
function qapiNameLength(s: string): number {
  const m = /^(?:__[A-Za-z0-9.-]*_)?[A-Za-z][A-Za-z0-9_-]*/.exec(s);
  return m ? m[0].length : 0;
}

/** key_to_index: leading decimal digits as an index, capped at INT_MAX; undefined unless s starts with a digit. */
function indexOf(s: string): number | undefined {
  const m = /^[0-9]+/.exec(s);
  if (!m) return undefined;
  const n = Number(m[0]);
  return n > 0x7fffffff ? 0x7fffffff : n;
}

/** starts_with_help_option: the length of a leading '?' or 'help'. */
function helpLength(s: string): number {
  return s.startsWith('?') ? 1 : s.startsWith('help') ? 4 : 0;
}

/**
 * keyval_parse_put: maps `name` in `cur` to a dict (value undefined) or to
 * the string; a clash between the two is an error naming the key up to
 * `keyPrefix`.
 */
function put(cur: Dict, name: string, value: string | undefined, keyPrefix: string): Dict | undefined {
  const old = cur.get(name);
  if (old !== undefined) {
    if ((typeof old === 'string') !== (value !== undefined)) throw err(`Parameters '${keyPrefix}.*' used inconsistently`);
    if (value === undefined) return old as Dict;
  }
  if (value !== undefined) {
    cur.set(name, value);
    return undefined;
  }
  const d: Dict = new Map();
  cur.set(name, d);
  return d;
}

/**
 * keyval_parse_one: one element starting at `pos`; returns where the next
 * one starts and whether this one was a help request.
 */
function parseOne(root: Dict, text: string, pos: number, impliedKey: string | undefined): { next: number; help: boolean } {
  let key = text.slice(pos);
  let len = key.search(/[=,]/);
  if (len < 0) len = key.length;
  let bareValueEnd = -1;
  if (len > 0 && key[len] !== '=') {
    if (helpLength(key) === len) return { next: pos + len + (text[pos + len] === ',' ? 1 : 0), help: true };
    if (impliedKey !== undefined) {
      // Desugar: the bare value is the implied key's.
      bareValueEnd = pos + len;
      key = impliedKey;
      len = impliedKey.length;
    }
  }
  const keyEnd = len;

  // The fragments, each validated, and the nodes on the way created, in QEMU's order.
  let cur = root;
  let s = 0;
  let prev = '';
  for (;;) {
    const rest = key.slice(s);
    let flen = s !== 0 ? (/^[0-9]+/.exec(rest)?.[0].length ?? 0) : 0;
    if (flen === 0) flen = qapiNameLength(rest);
    if (flen > keyEnd - s) flen = keyEnd - s;
    if (flen === 0 || (s + flen < keyEnd && key[s + flen] !== '.')) throw err(`Invalid parameter '${key.slice(0, keyEnd)}'`);
    if (flen > FRAGMENT_MAX) {
      const fragment = s !== 0 || s + flen !== keyEnd;
      throw err(`Parameter${fragment ? ' fragment' : ''} '${rest.slice(0, flen)}' is too long`);
    }
    if (s !== 0) cur = put(cur, prev, undefined, key.slice(0, s - 1))!;
    prev = rest.slice(0, flen);
    s += flen;
    if (key[s] !== '.') break;
    s++;
  }

  let value: string;
  let next: number;
  if (bareValueEnd >= 0) {
    value = text.slice(pos, bareValueEnd);
    next = bareValueEnd + (text[bareValueEnd] === ',' ? 1 : 0);
  } else {
    if (key[s] !== '=') throw err(`Expected '=' after parameter '${key.slice(0, s)}'`);
    let i = pos + s + 1;
    value = '';
    // The value runs to the first single comma; ',,' stands for ','.
    for (;;) {
      if (i >= text.length) break;
      if (text[i] === ',') {
        i++;
        if (text[i] !== ',') break;
      }
      value += text[i++];
    }
    next = i;
  }
  put(cur, prev, value, key.slice(0, keyEnd));
  return { next, help: false };
}

/**
 * keyval_parse(text, impliedKey, NULL): the nested tree, lists made from
 * objects whose keys are all indexes. A help request is an error, as for
 * every storage-daemon option that goes through QEMU's keyval visitor.
 */
export function parseKeyval(text: string, impliedKey?: string): KeyvalTree {
  const root: Dict = new Map();
  let help = false;
  let implied = impliedKey;
  let pos = 0;
  while (pos < text.length) {
    const r = parseOne(root, text, pos, implied);
    help ||= r.help;
    pos = r.next;
    implied = undefined;
  }
  if (help) throw err('Help is not available for this option');
  return listify(root, []) as KeyvalTree;
}

/**
 * keyval_listify: children first (in QDict iteration order, so the first
 * error is QEMU's), then this dict becomes a list if its keys are indexes.
 */
function listify(cur: Dict, keyOfCur: readonly string[]): KeyvalTree | KeyvalNode[] {
  let hasIndex = false;
  let hasMember = false;
  const converted = new Map<string, KeyvalNode>();
  const order = qdictOrder([...cur.keys()]);
  for (const k of order) {
    if (indexOf(k) !== undefined) hasIndex = true;
    else hasMember = true;
    const v = cur.get(k)!;
    converted.set(k, typeof v === 'string' ? v : listify(v, [...keyOfCur, k]));
  }
  const prefix = keyOfCur.map((k) => `${k}.`).join('');
  if (hasIndex && hasMember) throw err(`Parameters '${prefix}*' used inconsistently`);
  if (!hasIndex) {
    // Members in insertion order, as the QDict holds them (iteration order is recomputed from it where it matters).
    const out: KeyvalTree = {};
    for (const k of cur.keys()) out[k] = converted.get(k)!;
    return out;
  }
  // Distinct keys may name the same index ("1", "01"): the one QEMU meets last wins.
  const elements = new Map<number, KeyvalNode>();
  let max = -1;
  for (const k of order) {
    const i = indexOf(k)!;
    max = Math.max(max, i);
    elements.set(i, converted.get(k)!);
  }
  const list: KeyvalNode[] = [];
  for (let i = 0; i <= max; i++) {
    if (!elements.has(i)) throw err(`Parameter '${prefix}${i}' missing`);
    list.push(elements.get(i)!);
  }
  return list;
}
