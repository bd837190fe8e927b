/**
 * HMP arguments as QEMU's monitor parses them against a command's
 * args_type string (monitor/hmp.c monitor_parse_arguments): each
 * `name:T` in order, T one of
 *   s  a word (quoted with \" \\ \n \r \' escapes),   B  a block device name,   F  a file name,
 *   S  the rest of the line,   o  a size (suffixes k M G T; no suffix = MiB),
 *   i/l  an integer,   b  on|off,   -x  a flag written -x,
 * and `?` after T when the argument may be left out. Errors carry the
 * monitor's words; the caller adds `Try "help CMD"…`.
 */
export type HmpArgs = Record<string, string | number | boolean>;

export class HmpArgError extends Error {}

const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';

interface Cursor {
  s: string;
  p: number;
}

function skipSpace(c: Cursor): void {
  while (isSpace(c.s[c.p])) c.p++;
}

/** get_str: one word or one quoted string; undefined at the end of the line or on a bad quote. */
export function getStr(c: Cursor): string | undefined {
  skipSpace(c);
  if (c.p >= c.s.length) return undefined;
  let w = '';
  if (c.s[c.p] === '"') {
    c.p++;
    while (c.p < c.s.length && c.s[c.p] !== '"') {
      if (c.s[c.p] === '\\') {
        const e = c.s[++c.p];
        if (e === 'n') w += '\n';
        else if (e === 'r') w += '\r';
        else if (e === '\\' || e === "'" || e === '"') w += e;
        else throw new HmpArgError(`unsupported escape code: '\\${e ?? ''}'`);
        c.p++;
      } else w += c.s[c.p++];
    }
    if (c.s[c.p] !== '"') throw new HmpArgError('unterminated string');
    c.p++;
    return w;
  }
  while (c.p < c.s.length && !isSpace(c.s[c.p])) w += c.s[c.p++];
  return w;
}

const SIZE_SUFFIX: Record<string, number> = { b: 0, k: 10, m: 20, g: 30, t: 40, p: 50, e: 60 };

/** qemu_strtosz_MiB: a number with an optional fraction and suffix; without a suffix, mebibytes. */
function parseSize(c: Cursor): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([bkmgtpeBKMGTPE])?/.exec(c.s.slice(c.p));
  if (!m) return undefined;
  const shift = m[2] === undefined ? 20 : SIZE_SUFFIX[m[2].toLowerCase()]!;
  const v = Number(m[1]) * 2 ** shift;
  if (!Number.isFinite(v) || v > Number.MAX_SAFE_INTEGER || (m[1]!.includes('.') && m[2] === 'b')) return undefined;
  c.p += m[0].length;
  return Math.floor(v);
}

interface Spec {
  key: string;
  type: string;
  flag?: string;
  optional: boolean;
}

function specs(argsType: string): Spec[] {
  if (argsType === '') return [];
  return argsType.split(',').map((part) => {
    const [key, t] = part.split(':') as [string, string];
    if (t.startsWith('-')) return { key, type: '-', flag: t[1]!, optional: true };
    return { key, type: t[0]!, optional: t.endsWith('?') };
  });
}

/** Parses `rest` (the line after the command's name) for command `name`. */
export function parseHmpArgs(name: string, argsType: string, rest: string): HmpArgs {
  const out: HmpArgs = {};
  const c: Cursor = { s: rest, p: 0 };
  const all = specs(argsType);
  for (const [i, sp] of all.entries()) {
    switch (sp.type) {
      case '-': {
        skipSpace(c);
        if (c.s[c.p] !== '-') break;
        const opt = c.s[c.p + 1] ?? '';
        if (opt === sp.flag) {
          c.p += 2;
          out[sp.key] = true;
        } else if (!all.slice(i + 1).some((o) => o.type === '-' && o.flag === opt)) {
          throw new HmpArgError(`${name}: unsupported option -${opt}`);
        }
        break;
      }
      case 'S': {
        skipSpace(c);
        if (sp.optional && c.p >= c.s.length) break;
        if (c.p >= c.s.length) throw new HmpArgError(`${name}: string expected`);
        out[sp.key] = c.s.slice(c.p);
        c.p = c.s.length;
        break;
      }
      case 'o':
      case 'i':
      case 'l': {
        skipSpace(c);
        if (sp.optional && c.p >= c.s.length) break;
        if (sp.type === 'o') {
          const v = parseSize(c);
          if (v === undefined) throw new HmpArgError('invalid size');
          out[sp.key] = v;
        } else {
          const m = /^-?(0x[0-9a-fA-F]+|\d+)/.exec(c.s.slice(c.p));
          if (!m) throw new HmpArgError(c.p >= c.s.length ? `${name}: integer expected` : `invalid char '${c.s[c.p]}' in expression`);
          out[sp.key] = Number(m[0]);
          c.p += m[0].length;
        }
        break;
      }
      case 'b': {
        skipSpace(c);
        if (sp.optional && c.p >= c.s.length) break;
        const w = getStr(c);
        if (w !== 'on' && w !== 'off') throw new HmpArgError("Expected 'on' or 'off'");
        out[sp.key] = w === 'on';
        break;
      }
      default: {
        skipSpace(c);
        if (sp.optional && c.p >= c.s.length) break;
        const w = getStr(c);
        if (w === undefined) throw new HmpArgError(`${name}: ${sp.type === 'B' ? 'block device name' : sp.type === 'F' ? 'filename' : 'string'} expected`);
        out[sp.key] = w;
      }
    }
  }
  skipSpace(c);
  if (c.p < c.s.length) throw new HmpArgError(`${name}: extraneous characters at the end of line`);
  return out;
}
