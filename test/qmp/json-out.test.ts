/** QEMU's JSON writer (json-out.ts) and QDict order (qdict-order.ts): the fast paths give what the general ones give. */
import { describe, expect, it } from 'vitest';
import { toQmpJson } from '../../src/qmp/json-out.js';
import { qdictOrder } from '../../src/qmp/qdict-order.js';

describe('toQmpJson strings', () => {
  it('writes printable ASCII as it is and escapes the rest as QEMU does', () => {
    let all = '';
    for (let c = 0; c < 0x80; c++) all += String.fromCharCode(c);
    const expected = [...all]
      .map((ch) => {
        const c = ch.charCodeAt(0);
        if (ch === '"') return '\\"';
        if (ch === '\\') return '\\\\';
        const named: Record<string, string> = { '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
        if (named[ch]) return named[ch];
        return c < 0x20 || c === 0x7f ? `\\u${c.toString(16).toUpperCase().padStart(4, '0')}` : ch;
      })
      .join('');
    expect(toQmpJson(all)).toBe(`"${expected}"`);
    expect(toQmpJson('/tmp/disk 0.qcow2')).toBe('"/tmp/disk 0.qcow2"');
    expect(toQmpJson('a"b')).toBe('"a\\"b"');
    expect(toQmpJson('é😀')).toBe('"\\u00E9\\uD83D\\uDE00"');
  });
});

describe('qdictOrder', () => {
  it('gives each key list its own order, cached or not', () => {
    const a = ['driver', 'node-name', 'file', 'size'];
    const first = qdictOrder(a);
    expect(qdictOrder([...a])).toEqual(first);
    expect([...first].sort()).toEqual([...a].sort());
    // Lists whose keys joined with a separator would read the same.
    const x = qdictOrder(['a\u0000b', 'c']);
    const y = qdictOrder(['a', 'b\u0000c']);
    expect([...x].sort()).toEqual(['a\u0000b', 'c']);
    expect([...y].sort()).toEqual(['a', 'b\u0000c']);
  });
  it('keeps apart a key list and its extension (the cache is a trie over the keys)', () => {
    const short = [...qdictOrder(['p', 'q'])];
    const long = qdictOrder(['p', 'q', 'r']);
    expect([...long].sort()).toEqual(['p', 'q', 'r']);
    expect(qdictOrder(['p', 'q'])).toEqual(short);
    expect(qdictOrder(['p'])).toEqual(['p']);
  });
  it('writes member names escaped, once each, and leaves out undefined members', () => {
    const obj = { 'a"b': 1, gone: undefined, c: 'x' };
    const text = toQmpJson(obj);
    expect(JSON.parse(text)).toEqual({ 'a"b': 1, c: 'x' });
    expect(text).toContain('"a\\"b": 1');
    expect(text).not.toContain('gone');
    expect(toQmpJson([obj, obj], true)).toBe(`[\n    ${toQmpJson(obj, true).replaceAll('\n', '\n    ')},\n    ${toQmpJson(obj, true).replaceAll('\n', '\n    ')}\n]`);
  });
  it('orders objects in a reply the same on every write', () => {
    const obj = { 'node-name': 'n0', drv: 'null-co', ro: false, file: 'null-co://', backing_file_depth: 0 };
    const once = toQmpJson([obj]);
    expect(toQmpJson([obj, obj])).toBe(`[${once.slice(1, -1)}, ${once.slice(1, -1)}]`);
  });
});
