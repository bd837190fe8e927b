/**
 * The QMP wire parser against the transcripts recorded from
 * qemu-storage-daemon 7.2 (fixtures/wire-qsd-7.2.json, re-played live by
 * wire-live.test.ts), plus properties: any JSON value split anywhere parses
 * back the same; garbage never throws, stays bounded and is followed by a
 * working resync.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createQmpParser, exactNumbers, parseErrorReply, parseQmpMessages, plainNumbers, qnum, type WireItem, type WireLimits } from '../../src/qmp/wire.js';
import { materialize, SENTINEL } from './wire-cases.js';
import { expandRuns, type WireFixture } from './wire-record.js';

const fixture = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'wire-qsd-7.2.json'), 'utf8')) as WireFixture;

function feedAll(chunks: Uint8Array[], limits?: WireLimits): WireItem[] {
  const items: WireItem[] = [];
  const p = createQmpParser((i) => items.push(i), { numbers: exactNumbers, ...(limits ? { limits } : {}) });
  for (const c of chunks) p.feed(c);
  return items;
}

/** A reply line as a value, numbers exact. QEMU prints infinite doubles as inf, which is not JSON. */
function readReply(line: string): Record<string, unknown> {
  const [item] = parseQmpMessages(line.replace(/([[:,] )(-?)inf\b/g, '$1$21e999'), { numbers: exactNumbers });
  if (!item || !('value' in item)) throw new Error(`unreadable reply ${line}`);
  return item.value as Record<string, unknown>;
}

/** Values as the reply shows them: an integral double prints like an integer, -0 like 0 when it was an integer. */
function sameEcho(ours: unknown, theirs: unknown): boolean {
  if (typeof ours === 'bigint' || typeof ours === 'number') {
    if (typeof theirs !== 'bigint' && typeof theirs !== 'number') return false;
    return typeof ours === 'bigint' && typeof theirs === 'bigint' ? ours === theirs : Number(ours) === Number(theirs);
  }
  if (Array.isArray(ours)) return Array.isArray(theirs) && ours.length === theirs.length && ours.every((v, i) => sameEcho(v, theirs[i]));
  if (ours !== null && typeof ours === 'object') {
    if (theirs === null || typeof theirs !== 'object' || Array.isArray(theirs)) return false;
    const a = ours as Record<string, unknown>;
    const b = theirs as Record<string, unknown>;
    return Object.keys(a).length === Object.keys(b).length && Object.keys(a).every((k) => Object.hasOwn(b, k) && sameEcho(a[k], b[k]));
  }
  return ours === theirs;
}

const isObject = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);

describe(`QMP wire input vs qemu-storage-daemon ${fixture.qemu} (recorded)`, () => {
  it.each(fixture.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const items = feedAll([materialize(c.input), Buffer.from(fixture.sentinel)]);
    const replies = expandRuns(c.replies).map(readReply);
    expect(items.length).toBe(replies.length);
    items.forEach((item, i) => {
      const reply = replies[i]!;
      if ('error' in item) {
        // Every wire error is answered, without an id, in order with the other replies.
        expect(reply).toEqual(parseErrorReply(item));
      } else if (!isObject(item.value)) {
        // Parsed fine; the dispatcher refuses it.
        expect(reply).toEqual({ error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } });
      } else {
        expect(reply).toHaveProperty('return');
        const id = (item.value as Record<string, unknown>).id;
        expect(Object.hasOwn(reply, 'id')).toBe(id !== undefined);
        if (id !== undefined) expect(sameEcho(id, reply.id), `id ${String(id)}`).toBe(true);
      }
    });
  });

  it('gives the same items for every case fed one byte at a time', () => {
    for (const c of fixture.cases.filter((x) => !x.slow)) {
      const bytes = Buffer.concat([materialize(c.input), Buffer.from(fixture.sentinel)]);
      const whole = feedAll([bytes]);
      const bytewise = feedAll([...bytes].map((b) => Uint8Array.of(b)));
      expect(bytewise, c.name).toEqual(whole);
    }
  });
});

describe('QMP wire input: limits (small limits, same code paths as QEMU 64 MiB / 2 Mi / 1024)', () => {
  const limits = { maxTokenBytes: 64, maxTokens: 16, maxNesting: 4 };
  const run = (s: string) => feedAll([Buffer.from(s)], limits).map((i) => ('error' in i ? i.error : i.value));

  it('a token past the size limit is cut off after limit + 1 bytes and lexing restarts there', () => {
    // Inside an object the cut token takes the message past the size limit; "a" then lexes as a keyword.
    expect(run(`{"x": "${'a'.repeat(66)}"}\n`)).toEqual(['JSON token size limit exceeded', "JSON parse error, invalid keyword 'aa'", "JSON parse error, stray '\"}\n'"]);
    expect(run(`"${'a'.repeat(64)}"\n`)).toEqual(['JSON token size limit exceeded', "JSON parse error, stray '\"\n'"]);
    // The limit holds for a message of one token too, counting a terminator byte per token.
    expect(run(`"${'a'.repeat(61)}"`)).toEqual(['a'.repeat(61)]);
    expect(run(`"${'a'.repeat(62)}"`)).toEqual(['JSON token size limit exceeded']);
  });

  it('the tokens of one message may not exceed the size limit together', () => {
    expect(run(`{"a": "${'a'.repeat(40)}", "b": "${'b'.repeat(30)}"}`)).toEqual(['JSON token size limit exceeded', 'JSON parse error, expecting value']);
  });

  it('token count: the limit is checked before the balance test', () => {
    expect(run(`[${'1,'.repeat(6)}1]`)).toEqual([[1n, 1n, 1n, 1n, 1n, 1n, 1n]]);
    // The closing ']' is token 17.
    expect(run(`[${'1,'.repeat(7)}1]`)).toEqual(['JSON token count limit exceeded']);
    expect(run(`[${'1,'.repeat(8)}1]`)).toEqual(['JSON token count limit exceeded', 1n, 'JSON parse error, expecting value']);
  });

  it('memory stays bounded while a huge message streams in', () => {
    const p = createQmpParser(() => undefined);
    const chunk = Buffer.from('[1,'.repeat(1 << 14));
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 20; i++) p.feed(chunk); // 1 MB of input, past the nesting limit at once
    const chunk2 = Buffer.from('1,'.repeat(1 << 16));
    p.feed(Buffer.from('{"a": ['));
    for (let i = 0; i < 17; i++) p.feed(chunk2); // 2.1 Mi tokens: the count limit ends the message
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(200 << 20);
  });
});

describe('QMP wire input: numbers', () => {
  it('keeps int64, uint64 and double apart', () => {
    expect(qnum('int', '-9223372036854775808')).toEqual({ kind: 'int64', value: -(1n << 63n) });
    expect(qnum('int', '18446744073709551615')).toEqual({ kind: 'uint64', value: (1n << 64n) - 1n });
    expect(qnum('int', '18446744073709551616')).toEqual({ kind: 'double', value: 2 ** 64 });
    expect(qnum('int', '-9223372036854775809')).toEqual({ kind: 'double', value: -(2 ** 63) });
    expect(qnum('float', '1.0')).toEqual({ kind: 'double', value: 1 });
    expect(qnum('int', '-0')).toEqual({ kind: 'int64', value: 0n });
    expect(plainNumbers(qnum('int', '9007199254740993'))).toBe(9007199254740993n);
    expect(plainNumbers(qnum('int', '42'))).toBe(42);
    expect(exactNumbers(qnum('int', '42'))).toBe(42n);
    expect(exactNumbers(qnum('float', '42.0'))).toBe(42);
  });
});

// A value in QEMU's dialect with its expected parse (exact numbers).
const key = fc.string({ unit: 'binary', maxLength: 8 });
const jsonish = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(true, false, null),
    fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string({ unit: 'binary', maxLength: 12 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(key, tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** Serialises in QEMU's dialect: strings randomly single- or double-quoted, some characters escaped, numbers as floats. */
function serialise(v: unknown, r: () => number): string {
  if (v === null || typeof v === 'boolean') return String(v);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return Object.is(v, -0) ? '-0.0' : Number.isInteger(v) && Math.abs(v) < 1e21 ? `${v}.0` : String(v).replace('e+', 'e');
  if (typeof v === 'string') {
    const q = r() < 0.5 ? '"' : "'";
    let out = q;
    for (const ch of v) {
      const cp = ch.codePointAt(0)!;
      if (ch === q || ch === '\\') out += `\\${ch}`;
      // Escaped as \uXXXX, a surrogate pair beyond the BMP.
      else if (cp < 0x20 || r() < 0.2) out += [...Array(ch.length).keys()].map((k) => `\\u${ch.charCodeAt(k).toString(16).padStart(4, '0')}`).join('');
      else out += ch;
    }
    return out + q;
  }
  if (Array.isArray(v)) return `[${v.map((x) => serialise(x, r)).join(r() < 0.5 ? ',' : ' ,\n ')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).map((k) => `${serialise(k, r)}:${serialise(o[k], r)}`).join(', ')}}`;
}

/** Characters QEMU refuses inside strings (surrogates, noncharacters) make the expected value unparseable; keep to valid ones. */
const validText = (v: unknown): boolean =>
  typeof v === 'string'
    ? [...v].every((c) => {
        const cp = c.codePointAt(0)!;
        return !(cp >= 0xd800 && cp <= 0xdfff) && !(cp >= 0xfdd0 && cp <= 0xfdef) && (cp & 0xfffe) !== 0xfffe;
      })
    : Array.isArray(v) ? v.every(validText)
    : v !== null && typeof v === 'object' ? Object.entries(v).every(([k, x]) => validText(k) && validText(x))
    : true;

function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}

describe('QMP wire input: properties', () => {
  it('any value, serialised in QEMU dialect and split at any bytes, parses back the same', () => {
    fc.assert(
      fc.property(jsonish.filter(validText), fc.array(fc.nat(), { maxLength: 8 }), fc.infiniteStream(fc.double({ min: 0, max: 1, noNaN: true })), (v, cuts, rs) => {
        const it = rs[Symbol.iterator]();
        const text = ` ${serialise(v, () => it.next().value as number)}\n`;
        const items = feedAll(splitAt(Buffer.from(text), cuts));
        expect(items).toEqual([{ value: v }]);
      }),
      { numRuns: 300 },
    );
  });

  it('fc.jsonValue as JSON.stringify writes it, several per chunk', () => {
    fc.assert(
      fc.property(fc.array(fc.jsonValue({ maxDepth: 4 }), { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 6 }), (vs, cuts) => {
        const text = `${vs.map((v) => JSON.stringify(v)).join('\n')}\n`;
        const items = feedAll(splitAt(Buffer.from(text), cuts));
        // QEMU rejects noncharacters and lone surrogates inside strings; fc.jsonValue makes neither by default.
        const plain = items.map((i) => ('value' in i ? { value: JSON.parse(JSON.stringify(i.value, (_k, x) => (typeof x === 'bigint' ? Number(x) : x))) } : i));
        expect(plain).toEqual(vs.map((v) => ({ value: JSON.parse(JSON.stringify(v)) })));
      }),
      { numRuns: 200 },
    );
  });

  it('garbage never throws, stays bounded, and a valid message after a resync point is parsed', () => {
    const limits = { maxTokenBytes: 4096, maxTokens: 256, maxNesting: 32 };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(), { maxLength: 6 }), (garbage, cuts) => {
        const items: WireItem[] = [];
        const p = createQmpParser((i) => items.push(i), { limits });
        for (const c of splitAt(garbage, cuts)) p.feed(c);
        // Whatever state garbage left: 0xFF ends any token and enters recovery; closers end any open message.
        p.feed(Uint8Array.of(0xff));
        p.feed(Buffer.from(`${']'.repeat(40)}${'}'.repeat(40)}\n{"execute": "x"}`));
        expect(items[items.length - 1]).toEqual({ value: { execute: 'x' } });
        expect(items.every((i) => ('error' in i ? typeof i.error === 'string' && i.error.length < 5000 : true))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
