import { BlockError } from '../image/errors.js';
import { probeFormat } from '../image/probe.js';
import type { BlockdevSpec } from './open.js';
import { flattenQdict } from './options.js';

/**
 * A `json:{…}` pseudo file name as options (parse_json_filename): an
 * object, its dotted keys ("file.filename") as nested options, the
 * header's format when it names no driver, else one probed from its file.
 */
export async function jsonFilenameSpec(name: string, format?: string): Promise<BlockdevSpec> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(doubleQuoted(name.slice('json:'.length)));
  } catch (err) {
    throw new BlockError('INVALID_ARGUMENT', `Could not parse the JSON options: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new BlockError('INVALID_ARGUMENT', 'Invalid JSON object given');
  const spec = crumple(flattenQdict(parsed as Record<string, unknown>)) as BlockdevSpec;
  if (spec.driver === undefined) {
    const file = (spec['file'] as { filename?: unknown } | undefined)?.filename;
    spec.driver = format ?? (typeof file === 'string' ? await probeFormat(file).catch(() => 'raw') : 'raw');
  }
  return spec;
}

/**
 * QEMU's JSON parser also takes strings in single quotes ({'driver':
 * 'null-co'}, as the iotests write json: names): rewritten here as the
 * double-quoted strings JSON.parse reads.
 */
function doubleQuoted(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      // A double-quoted string is copied as it is, escapes included.
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === "'") {
      let s = '';
      let j = i + 1;
      for (; j < text.length && text[j] !== "'"; j++) {
        if (text[j] === '\\' && j + 1 < text.length) {
          const e = text[++j]!;
          s += e === "'" ? "'" : `\\${e}`;
        } else if (text[j] === '"') s += '\\"';
        else s += text[j];
      }
      out += `"${s}"`;
      i = j;
    } else out += c;
  }
  return out;
}

/** qdict_crumple: dotted keys back into nested objects, all-numeric levels into lists. */
function crumple(flat: Record<string, unknown>): unknown {
  const root: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(flat)) {
    const parts = key.split('.');
    let at = root;
    for (const p of parts.slice(0, -1)) at = (at[p] ??= {}) as Record<string, unknown>;
    at[parts[parts.length - 1]!] = value;
  }
  const listify = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object') return v;
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    for (const k of keys) o[k] = listify(o[k]);
    return keys.length > 0 && keys.every((k, i) => k === String(i)) ? keys.map((k) => o[k]) : o;
  };
  return listify(root);
}
