/**
 * keyval: QEMU's own expectations (tests/unit/test-keyval.c, ported as
 * data), the keyval visitor's conversions and texts, and --blockdev
 * arguments checked word for word against qemu-storage-daemon.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseCliObject } from '../../src/qmp/cli-object.js';
import { QmpError } from '../../src/qmp/error.js';
import { parseKeyval } from '../../src/qmp/keyval.js';
import { BlockdevOptions } from '../../src/qmp/schema/block-core.js';
import { visitKeyval } from '../../src/qmp/schema/keyval-visit.js';
import { alternate, any, array, bool, enumType, int8, nul, number, size, str, struct, uint16, uint64, union } from '../../src/qmp/schema/types.js';
import { qemu } from '../helpers/qemu.js';

/** The error text a call throws (QmpError desc), or the value it returns. */
function outcome(f: () => unknown): unknown {
  try {
    return f();
  } catch (e) {
    if (e instanceof QmpError) return `ERR ${e.desc}`;
    throw e;
  }
}

const long = 'a'.repeat(127);

describe('parseKeyval (test-keyval.c)', () => {
  const cases: Array<[string, string | undefined, unknown]> = [
    ['', undefined, {}],
    ['=val', undefined, "ERR Invalid parameter ''"],
    ['.', undefined, "ERR Invalid parameter '.'"],
    ['key.', undefined, "ERR Invalid parameter 'key.'"],
    ['7up=val', undefined, "ERR Invalid parameter '7up'"],
    [`${long}a=v`, undefined, `ERR Parameter '${long}a' is too long`],
    [`k.${long}a=v`, undefined, `ERR Parameter fragment '${long}a' is too long`],
    [`${long}=v`, undefined, { [long]: 'v' }],
    [`k.${long}=v`, undefined, { k: { [long]: 'v' } }],
    ['key[0]=val', undefined, "ERR Invalid parameter 'key[0]'"],
    ['a=1,b=2,,x,a=3', undefined, { a: '3', b: '2,x' }],
    ['id=foo,id=bar', undefined, { id: 'bar' }],
    ['a.b.c=1,a.b.c=2,d=3', undefined, { a: { b: { c: '2' } }, d: '3' }],
    ['a.b=1,a=2', undefined, "ERR Parameters 'a.*' used inconsistently"],
    ['a.b=1,a.b.c=2', undefined, "ERR Parameters 'a.b.*' used inconsistently"],
    ['x=y,', undefined, { x: 'y' }],
    [',', undefined, "ERR Invalid parameter ''"],
    ['x=,,id=bar', undefined, { x: ',id=bar' }],
    ['id=666', undefined, { id: '666' }],
    ['an,noaus,noaus=', undefined, "ERR Expected '=' after parameter 'an'"],
    ['no', undefined, "ERR Expected '=' after parameter 'no'"],
    ['an,aus=off,noaus=', 'implied', { implied: 'an', aus: 'off', noaus: '' }],
    ['val', 'eins.zwei', { eins: { zwei: 'val' } }],
    [',', 'implied', "ERR Invalid parameter ''"],
    [',,,a=1', 'implied', "ERR Invalid parameter ''"],
    ['val,,ue', 'implied', "ERR Invalid parameter ''"],
    ['=val', 'implied', "ERR Invalid parameter ''"],
    ['help', undefined, 'ERR Help is not available for this option'],
    ['help', 'implied', 'ERR Help is not available for this option'],
    ['?', undefined, 'ERR Help is not available for this option'],
    ['help=on', undefined, { help: 'on' }],
    ['help.abc', undefined, "ERR Expected '=' after parameter 'help.abc'"],
    ['help.abc', 'implied', { implied: 'help.abc' }],
    ['number=42,help,foo=bar', undefined, 'ERR Help is not available for this option'],
    // An error after the help request wins: parsing stops there.
    ['help,x', undefined, "ERR Expected '=' after parameter 'x'"],
    ['__org.qemu_x-y=1', undefined, { '__org.qemu_x-y': '1' }],
    // Lists (test_keyval_parse_list).
    ['0=1', undefined, "ERR Invalid parameter '0'"],
    ['list.0=null,list.2=zwei,list.1=eins', undefined, { list: ['null', 'eins', 'zwei'] }],
    ['list.1=goner,list.0=null,list.01=eins,list.2=zwei', undefined, { list: ['null', 'eins', 'zwei'] }],
    ['a.list.1=eins,a.list.00=null,a.list.2=zwei', undefined, { a: { list: ['null', 'eins', 'zwei'] } }],
    ['a.b.c=1,a.b.0=2', undefined, "ERR Parameters 'a.b.*' used inconsistently"],
    ['a.0.c=1,a.b.c=2', undefined, "ERR Parameters 'a.*' used inconsistently"],
    ['list.1=lonely', undefined, "ERR Parameter 'list.0' missing"],
    ['list.0=null,list.2=eins,list.02=zwei', undefined, "ERR Parameter 'list.1' missing"],
    ['l.0.0=a,l.0.1=b,l.1.x=c', undefined, { l: [['a', 'b'], { x: 'c' }] }],
    ['a.1x=1', undefined, "ERR Invalid parameter 'a.1x'"],
  ];
  it.each(cases)('%j (implied %j)', (text, implied, expected) => {
    expect(outcome(() => parseKeyval(text, implied))).toEqual(expected);
  });

  it('keeps member order, even for keys that look like indexes to JS', () => {
    expect(Object.keys(parseKeyval('z=1,a=2,m.0=3,b=4'))).toEqual(['z', 'a', 'm', 'b']);
  });
});

describe('visitKeyval', () => {
  const S = struct('S', { '*b': bool, '*n': number, '*sz': size, '*u': uint64, '*i8': int8, '*u16': uint16, '*e': enumType('E', ['x', 'y']), '*a': any, '*z': nul });
  const v = (text: string) => outcome(() => visitKeyval(S, parseKeyval(text)));

  it('converts booleans as qapi_bool_parse does', () => {
    for (const t of ['on', 'yes', 'true', 'y']) expect(v(`b=${t}`)).toEqual({ b: true });
    for (const f of ['off', 'no', 'false', 'n']) expect(v(`b=${f}`)).toEqual({ b: false });
    expect(v('b=offer')).toBe("ERR Parameter 'b' expects 'on' or 'off'");
    expect(v('b=ON')).toBe("ERR Parameter 'b' expects 'on' or 'off'");
  });

  it('converts integers with qemu_strtou64/strtoi64 (base 0, whole string)', () => {
    expect(v('u=0')).toEqual({ u: 0 });
    expect(v('u=0x2a')).toEqual({ u: 42 });
    expect(v('u=052')).toEqual({ u: 42 });
    // Past 2^53 the value stays exact: a bigint.
    expect(v('u=-1')).toEqual({ u: 2n ** 64n - 1n });
    expect(v('u=18446744073709551616')).toBe("ERR Parameter 'u' expects integer");
    expect(v('u=-18446744073709551616')).toBe("ERR Parameter 'u' expects integer");
    expect(v('u=3.14')).toBe("ERR Parameter 'u' expects integer");
    expect(v('u=08')).toBe("ERR Parameter 'u' expects integer");
    expect(v('i8=-128')).toEqual({ i8: -128 });
    expect(v('i8=128')).toBe("ERR Parameter 'i8' expects int8_t");
    expect(v('u16=-1')).toBe("ERR Parameter 'u16' expects uint16_t");
  });

  it('converts sizes with qemu_strtosz', () => {
    expect(v('sz=0')).toEqual({ sz: 0 });
    expect(v('sz=8b')).toEqual({ sz: 8 });
    expect(v('sz=1.5k')).toEqual({ sz: 1536 });
    expect(v('sz=2M')).toEqual({ sz: 2 << 20 });
    expect(v('sz=0.1G')).toEqual({ sz: Math.round(2 ** 30 / 10 - 0.5) });
    expect(v('sz=16777215T')).toEqual({ sz: 16777215n * 2n ** 40n });
    for (const bad of ['-1', '18446744073709551616', '16777216T', '0Z', '16Gi', '1.5', '1e3', '0x1.8k', ' -0']) {
      expect(v(`sz=${bad}`), bad).toBe("ERR Parameter 'sz' expects size");
    }
  });

  it('converts numbers with strtod (finite only)', () => {
    expect(v('n=1.5e3')).toEqual({ n: 1500 });
    expect(v('n=0x10')).toEqual({ n: 16 });
    for (const bad of ['', 'inf', 'nan', '1e999', '1x']) expect(v(`n=${bad}`), bad).toBe("Invalid parameter type for 'n', expected: number".replace(/^/, 'ERR '));
  });

  it('keeps enums, any and refuses null', () => {
    expect(v('e=y,a=anything')).toEqual({ e: 'y', a: 'anything' });
    expect(v('a.x.0=1')).toEqual({ a: { x: ['1'] } });
    expect(v('e=z')).toBe("ERR Parameter 'e' does not accept value 'z'");
    expect(v('z=')).toBe("ERR Invalid parameter type for 'z', expected: null");
    expect(v('e.x=1')).toBe("ERR Parameters 'e.*' are unexpected");
  });

  it('names list elements a.N and picks alternate branches by shape', () => {
    const Inner = struct('Inner', { k: uint64 });
    const Alt = alternate('Alt', [Inner, str]);
    const L = struct('L', { l: array(Inner), '*alt': Alt, '*alts': array(Alt) });
    const w = (text: string) => outcome(() => visitKeyval(L, parseKeyval(text)));
    expect(w('l.0.k=1,l.1.k=x')).toBe("ERR Parameter 'l.1.k' expects integer");
    expect(w('l.0.j=1')).toBe("ERR Parameter 'l.0.k' is missing");
    expect(w('l=1')).toBe("ERR Invalid parameter type for 'l', expected: array");
    expect(w('l.0=1')).toBe("ERR Invalid parameter type for 'l.0', expected: object");
    expect(w('l.0.k=1,alt=name,alts.0=n,alts.1.k=2')).toEqual({ l: [{ k: 1 }], alt: 'name', alts: ['n', { k: 2 }] });
    expect(w('l.0.k=1,alt.0=x')).toBe("ERR Invalid parameter type for 'alt', expected: Alt");
    expect(w('l.0.k=1,alts.0.0=x')).toBe("ERR Invalid parameter type for 'null', expected: Alt");
  });

  it('visits a union by its converted discriminator, then refuses leftovers', () => {
    const U = union('U', { kind: enumType('K', ['a', 'b']) }, 'kind', { a: struct('A', { x: bool }) });
    const u = (text: string) => outcome(() => visitKeyval(U, parseKeyval(text)));
    expect(u('kind=a,x=on')).toEqual({ kind: 'a', x: true });
    expect(u('kind=b')).toEqual({ kind: 'b' });
    expect(u('kind=a')).toBe("ERR Parameter 'x' is missing");
    expect(u('kind=b,x=on')).toBe("ERR Parameter 'x' is unexpected");
    expect(u('x=on')).toBe("ERR Parameter 'kind' is missing");
  });
});

/**
 * --blockdev arguments with mistakes found while parsing or validating
 * (none gets as far as opening a file), against the block-core schema's
 * BlockdevOptions.
 */
const BLOCKDEV_CASES = [
  'driver=file',
  'driver=file,filename=/nonexistent-x,aio=bogus',
  'driver=raw,file.driver=file,file.filename=/x,offset=2M',
  'driver=null-co,size=1k,read-zeroes=maybe',
  'driver=file,,',
  'a.b=1,a=2',
  'a.1=x',
  'file,filename=/x,aio=bogus',
  'driver=null-co,size=0x',
  'driver=null-co,size=12 ',
  'driver=null-co,latency-ns=-1x',
  'driver=null-co,size.x=1',
  'driver=null-co,cache=x',
  'driver=null-co,cache.direct=on,cache.bogus=1',
  'driver=null-co,x=1,y=2,z=3,w=4',
  'driver=raw,file.0=x,file.2=y',
  'driver=raw,file.0=x,file.1=y',
  'driver=raw',
  'driver=raw,file.driver=file',
  'driver=bogus',
  'null-co,?,size=x',
  'null-co,size=x,help',
  '=x',
  'driver=null-co,a..b=1',
  `driver=null-co,${'a'.repeat(128)}=1`,
  `driver=null-co,b.${'a'.repeat(128)}=1`,
  'driver=null-co,a.0=x,a.3=y,a.1=z',
  'driver=null-co,a.0.b=x,a.x.c=y',
  'driver=null-co,,x=1',
  'driver.x=null-co',
  'driver=blkdebug,image=x,max-transfer=2147483648',
  'driver=blklogwrites,file=x,log=y,log-sector-size=4294967296',
  'driver=null-co,latency-ns=18446744073709551616',
  'driver=null-co,size=9223372036854775808',
  'driver=null-co,size=09',
  'driver=blkdebug,image=x,take-child-perms.0=bogus',
  'driver=blkdebug,image=x,take-child-perms=bogus',
  'driver=blkdebug,image=x,inject-error.0.event=read_aio,inject-error.0.errno=x',
  'driver=quorum,children.0=a,children.1.driver=null-co,children.1.x=1,vote-threshold=x',
  'driver=quorum,children.0.0=x,vote-threshold=1',
  'driver=nbd,server.type=bogus',
  'driver=nbd,server.type=unix,server.path=p,server.x=1,server.y=2',
  'driver=qcow2,file=f,overlap-check.template=all,overlap-check.inactive-l2=maybe',
  'driver=file,filename=x,aio=threads,aio-max-batch=1.0',
  '{"driver":"file"}',
  '{"driver": "null-co", "size": "x"}',
  '{"driver": "null-co", "size": 1} x',
  '{"driver": "null-co", "size": 1} {}',
  '{"driver": "null-co"',
  '{"driver": "null-co", "x": "ab',
  '{"driver": "null-co", "size": -',
  '{"driver": "raw", "file": ["a"]}',
  '{"driver": "null-co", "bogus": 1, "other": 2, "third": 3}',
];

describe.skipIf(!qemu.storageDaemon)('--blockdev errors vs qemu-storage-daemon', () => {
  it('gives the same message for every mistake', () => {
    const results = BLOCKDEV_CASES.map((arg) => {
      const q = spawnSync('qemu-storage-daemon', ['--blockdev', arg], { encoding: 'utf8', timeout: 5000 });
      const prefix = `qemu-storage-daemon: --blockdev ${arg}: `;
      const qemuMessage = q.stderr.startsWith(prefix) ? q.stderr.slice(prefix.length).trimEnd() : `unexpected output: ${q.stderr}`;
      return { arg, qemu: `ERR ${qemuMessage}`, ours: outcome(() => parseCliObject(BlockdevOptions, arg, 'driver')) };
    });
    expect(results.map((r) => ({ arg: r.arg, message: r.ours }))).toEqual(results.map((r) => ({ arg: r.arg, message: r.qemu })));
  });
});
