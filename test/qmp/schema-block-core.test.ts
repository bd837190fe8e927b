/**
 * block-core's schema against qemu-storage-daemon 7.2: argument mistakes in
 * blockdev-add, blockdev-del and query-named-block-nodes must be refused
 * with QEMU's very error (validation happens before any driver opens a
 * file, so the answers do not depend on the implementation), and our
 * introspection must describe these commands as QEMU's query-qmp-schema
 * does, compared by structure since type names are masked.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_CORE_COMMANDS, BLOCK_CORE_EVENTS } from '../../src/qmp/schema/block-core.js';
import type { CommandDef } from '../../src/qmp/schema/command.js';
import { introspectSchema } from '../../src/qmp/schema/introspect.js';
import { JOB_EVENTS } from '../../src/qmp/schema/job.js';
import { QOM_COMMANDS } from '../../src/qmp/schema/qom.js';
import { toQmpError } from '../../src/qmp/error.js';
import { qemu } from '../helpers/qemu.js';
import { QsdSession } from '../helpers/qsd.js';

type Case = [command: string, args: Record<string, unknown>];

const add = (args: Record<string, unknown>): Case => ['blockdev-add', args];
const blkdebug = (extra: Record<string, unknown>) => add({ driver: 'blkdebug', image: 'nonexistent-node', ...extra });
const qcow2 = (extra: Record<string, unknown>) => add({ driver: 'qcow2', file: 'nonexistent-node', ...extra });
const cbw = (extra: Record<string, unknown>) => add({ driver: 'copy-before-write', file: 'nonexistent-node', target: 'nonexistent-node2', ...extra });

/** Mistakes QEMU catches while visiting the arguments. */
const REFUSED: Case[] = [
  // The union's base and discriminator.
  add({}),
  add({ driver: 'bogus' }),
  add({ driver: 1 }),
  add({ driver: null }),
  add({ driver: 'null-co', 'node-name': 5 }),
  add({ driver: 'null-co', discard: 'trim' }),
  add({ driver: 'null-co', cache: true }),
  add({ driver: 'null-co', cache: { direct: 'yes' } }),
  add({ driver: 'null-co', cache: { bogus: true } }),
  add({ driver: 'null-co', 'read-only': 1 }),
  add({ driver: 'null-co', 'auto-read-only': null }),
  add({ driver: 'null-co', 'detect-zeroes': 'maybe' }),
  add({ driver: 'null-co', bogus: 1 }),
  // Several unexpected members: QEMU names the first in its hash table's order, not the document's.
  add({ driver: 'null-co', zz: 1, aa: 2 }),
  add({ driver: 'null-co', 'node-name': 'n', bogus: 1, extra: 2, more: 3, other: 4 }),
  add({ driver: 'raw', file: { driver: 'file', filename: '/nonexistent', x: 1, y: 2, z: 3 } }),
  // null-co: int, uint64 and bool members, and integer range edges.
  add({ driver: 'null-co', size: 'big' }),
  add({ driver: 'null-co', size: 1.5 }),
  add({ driver: 'null-co', size: 9223372036854775808 }),
  add({ driver: 'null-co', 'latency-ns': 'x' }),
  add({ driver: 'null-co', 'latency-ns': 18446744073709551616 }),
  add({ driver: 'null-co', 'latency-ns': 0.5 }),
  add({ driver: 'null-co', 'read-zeroes': 'true' }),
  // file: every member, a variant member of another driver, missing before unexpected.
  add({ driver: 'file' }),
  add({ driver: 'file', bogus: 1 }),
  add({ driver: 'file', filename: 1 }),
  add({ driver: 'file', filename: '/nonexistent', locking: 'maybe' }),
  add({ driver: 'file', filename: '/nonexistent', aio: 'posix' }),
  add({ driver: 'file', filename: '/nonexistent', 'aio-max-batch': '1' }),
  add({ driver: 'file', filename: '/nonexistent', 'drop-cache': 1 }),
  add({ driver: 'file', filename: '/nonexistent', 'x-check-cache-dropped': 'no' }),
  add({ driver: 'file', filename: '/nonexistent', 'pr-manager': false }),
  add({ driver: 'file', filename: '/nonexistent', offset: 0 }),
  add({ driver: 'host_device', filename: [] }),
  // raw and BlockdevRef: every JSON type, and mistakes inside inline definitions.
  add({ driver: 'raw' }),
  add({ driver: 'raw', file: 5 }),
  add({ driver: 'raw', file: [] }),
  add({ driver: 'raw', file: true }),
  add({ driver: 'raw', file: null }),
  add({ driver: 'raw', file: {} }),
  add({ driver: 'raw', file: { driver: 'nope' } }),
  add({ driver: 'raw', file: { driver: 'file' } }),
  add({ driver: 'raw', file: { driver: 'file', filename: 3 } }),
  add({ driver: 'raw', file: { driver: 'file', filename: '/nonexistent', bogus: 1 } }),
  add({ driver: 'raw', file: { driver: 'raw', file: { driver: 'file', filename: 7 } } }),
  add({ driver: 'raw', file: { driver: 'raw', file: { driver: 'file', filename: '/nonexistent', locking: 'maybe' } } }),
  add({ driver: 'raw', file: 'nonexistent-node', offset: '0' }),
  // qcow2: BlockdevRefOrNull, the overlap-check alternate, the encryption union.
  qcow2({ backing: 5 }),
  qcow2({ backing: [] }),
  qcow2({ backing: { driver: 'null-co', size: 'x' } }),
  qcow2({ 'overlap-check': 5 }),
  qcow2({ 'overlap-check': 'some' }),
  qcow2({ 'overlap-check': { template: 'x' } }),
  qcow2({ 'overlap-check': { 'main-header': 1 } }),
  qcow2({ 'overlap-check': { bogus: true } }),
  qcow2({ 'cache-size': 1e30 }),
  qcow2({ 'lazy-refcounts': 'on' }),
  qcow2({ encrypt: {} }),
  qcow2({ encrypt: { format: 'rot13' } }),
  qcow2({ encrypt: { format: 'luks', 'key-secret': 1 } }),
  qcow2({ encrypt: { format: 'aes', bogus: 1 } }),
  qcow2({ 'data-file': null }),
  qcow2({ 'discard-no-unref': true }),
  add({ driver: 'qcow2', file: { driver: 'file', filename: '/nonexistent', aio: 'bad' } }),
  // blkdebug: lists of structs, enums in lists, int32 ranges.
  add({ driver: 'blkdebug' }),
  blkdebug({ 'inject-error': {} }),
  blkdebug({ 'inject-error': [{}] }),
  blkdebug({ 'inject-error': [5] }),
  blkdebug({ 'inject-error': [{ event: 'read_aio' }, { event: 'nope' }] }),
  blkdebug({ 'inject-error': [{ event: 'read_aio', iotype: 'readx' }] }),
  blkdebug({ 'inject-error': [{ event: 'read_aio', errno: 'EIO' }] }),
  blkdebug({ 'inject-error': [{ event: 'read_aio', bogus: 1 }] }),
  blkdebug({ 'inject-error': [{ event: 'read_aio', a1: 1, a2: 2, a3: 3, a4: 4, a5: 5, a6: 6, a7: 7, a8: 8, a9: 9 }] }),
  blkdebug({ 'set-state': [{ event: 'read_aio', state: 1 }] }),
  blkdebug({ 'max-transfer': 4294967296 }),
  blkdebug({ 'max-discard': -2147483649 }),
  blkdebug({ 'take-child-perms': ['write', 'read'] }),
  blkdebug({ 'take-child-perms': 'write' }),
  blkdebug({ align: true }),
  // copy-before-write and blklogwrites: uint32 wrapping, nested structs.
  add({ driver: 'copy-before-write', file: 'nonexistent-node' }),
  cbw({ bitmap: { node: 'n' } }),
  cbw({ 'on-cbw-error': 'explode' }),
  cbw({ 'cbw-timeout': -1 }),
  cbw({ 'cbw-timeout': 4294967296 }),
  cbw({ bitmap: 'b' }),
  add({ driver: 'snapshot-access' }),
  add({ driver: 'snapshot-access', file: 'nonexistent-node', target: 'x' }),
  add({ driver: 'blklogwrites', file: 'nonexistent-node' }),
  add({ driver: 'blklogwrites', file: 'nonexistent-node', log: 'nonexistent-node2', 'log-sector-size': 4294967296 }),
  // Drivers blockemu does not open are still validated as QEMU validates them.
  add({ driver: 'quorum', children: ['a', 5], 'vote-threshold': 1 }),
  add({ driver: 'vvfat' }),
  add({ driver: 'nbd', server: { type: 'inet', host: 'h' } }),
  add({ driver: 'ssh', server: { host: 'h', port: '22', to: 70000 }, path: '/x' }),
  add({ driver: 'nfs', server: { type: 'unix', host: 'h' }, path: '/x' }),
  // The other commands.
  ['blockdev-del', {}],
  ['blockdev-del', { 'node-name': 1 }],
  ['blockdev-del', { 'node-name': 'x', force: true }],
  ['query-named-block-nodes', { flat: 'yes' }],
  ['query-named-block-nodes', { flat: true, x: 1 }],
  ['query-blockstats', { 'query-nodes': 1 }],
  ['query-blockstats', { 'query-nodes': true, device: 'x' }],
  ['block-set-write-threshold', {}],
  ['block-set-write-threshold', { 'node-name': 'x' }],
  ['block-set-write-threshold', { 'write-threshold': 1 }],
  ['block-set-write-threshold', { 'node-name': 'x', 'write-threshold': 1.5 }],
  ['block-set-write-threshold', { 'node-name': 'x', 'write-threshold': '1' }],
  ['block-set-write-threshold', { 'node-name': 'x', 'write-threshold': -9223372036854775809 }],
  ['block-set-write-threshold', { 'node-name': 5, 'write-threshold': 1 }],
];

/** Arguments QEMU accepts at validation (a driver then fails or succeeds): our visit must accept them too. */
const ACCEPTED: Case[] = [
  add({ driver: 'null-co', 'latency-ns': -1 }),
  add({ driver: 'raw', file: 'nonexistent-node', size: -1 }),
  qcow2({ backing: null }),
  qcow2({ backing: 'other', 'overlap-check': 'all', 'data-file': { driver: 'file', filename: '/nonexistent' } }),
  qcow2({ 'overlap-check': { template: 'cached', 'main-header': false }, encrypt: { format: 'luks', 'key-secret': 's' } }),
  blkdebug({ 'inject-error': [{ event: 'none', iotype: 'block-status', errno: 5, sector: -1, once: true, immediately: false }], 'max-transfer': -2147483648 }),
  add({ driver: 'file', filename: '/nonexistent', aio: 'io_uring', 'drop-cache': true, 'x-check-cache-dropped': false, locking: 'off' }),
  add({ driver: 'vvfat', dir: '/nonexistent' }),
  add({ driver: 'nbd', server: { type: 'unix', path: '/x', abstract: true } }),
  cbw({ bitmap: { node: 'n', name: 'b' }, 'on-cbw-error': 'break-snapshot', 'cbw-timeout': 4294967295 }),
  add({ driver: 'snapshot-access', file: 'nonexistent-node' }),
  ['query-named-block-nodes', {}],
  ['query-blockstats', {}],
  ['block-set-write-threshold', { 'node-name': 'x', 'write-threshold': -1 }],
];

const COMMANDS = new Map<string, CommandDef>(BLOCK_CORE_COMMANDS.map((c) => [c.name, c]));

function ourVisit([name, args]: Case): { error: { class: string; desc: string } } | 'ok' {
  try {
    COMMANDS.get(name)!.args.visit(JSON.parse(JSON.stringify(args)), []);
    return 'ok';
  } catch (err) {
    const e = toQmpError(err);
    return { error: { class: e.qmpClass, desc: e.desc } };
  }
}

describe('block-core argument validation', () => {
  it('accepts what QEMU accepts at validation', () => {
    for (const c of ACCEPTED) expect({ c, r: ourVisit(c) }).toEqual({ c, r: 'ok' });
  });
  it('refuses every mistake', () => {
    for (const c of REFUSED) expect({ c, r: ourVisit(c) }).toMatchObject({ c, r: { error: { class: 'GenericError' } } });
  });
});

describe.skipIf(!qemu.storageDaemon)('block-core vs qemu-storage-daemon', () => {
  let qsd: QsdSession;
  beforeAll(async () => {
    qsd = await QsdSession.start();
    expect(await qsd.exchange({ execute: 'qmp_capabilities' })).toEqual({ return: {} });
  });
  afterAll(() => qsd?.close());

  it(`refuses ${REFUSED.length} argument mistakes with QEMU's error`, async () => {
    for (const c of REFUSED) {
      const theirs = (await qsd.exchange({ execute: c[0], arguments: c[1] })) as Record<string, unknown>;
      expect({ c, r: ourVisit(c) }).toEqual({ c, r: theirs });
    }
  });

  it("describes its commands and events as QEMU's query-qmp-schema does", async () => {
    const theirs = (await qsd.exchange({ execute: 'query-qmp-schema' })) as { return: Entry[] };
    const ours = introspectSchema(BLOCK_CORE_COMMANDS, [...BLOCK_CORE_EVENTS, ...JOB_EVENTS]) as Entry[];
    const cmp = new Comparer(ours, theirs.return);
    for (const c of BLOCK_CORE_COMMANDS) {
      cmp.same(c.name, c.name, c.name);
    }
    for (const e of [...BLOCK_CORE_EVENTS, ...JOB_EVENTS]) cmp.same(e.name, e.name, e.name);
    expect(cmp.diffs).toEqual([]);

    // The three variants blockemu opens most, member by member, on their own.
    const oursAdd = cmp.ours.get(cmp.ours.get('blockdev-add')!['arg-type'] as string)!;
    const theirsAdd = cmp.theirs.get(cmp.theirs.get('blockdev-add')!['arg-type'] as string)!;
    expect(oursAdd['tag']).toBe('driver');
    for (const driver of ['file', 'qcow2', 'blkdebug', 'raw', 'null-co', 'copy-before-write']) {
      const members = (schema: Map<string, Entry>, union: Entry) => {
        const v = (union['variants'] as Array<{ case: string; type: string }>).find((x) => x.case === driver)!;
        return (schema.get(v.type)!['members'] as Member[]).map((m) => ({ name: m.name, optional: 'default' in m }));
      };
      expect({ driver, members: members(cmp.ours, oursAdd) }).toEqual({ driver, members: members(cmp.theirs, theirsAdd) });
    }
  });
  it("describes object-add (every ObjectOptions variant) and the qom-* commands as QEMU's query-qmp-schema does", async () => {
    const theirs = (await qsd.exchange({ execute: 'query-qmp-schema' })) as { return: Entry[] };
    const cmp = new Comparer(introspectSchema(QOM_COMMANDS, []) as Entry[], theirs.return);
    for (const c of QOM_COMMANDS) cmp.same(c.name, c.name, c.name);
    expect(cmp.diffs).toEqual([]);
  });
});

interface Entry {
  name: string;
  'meta-type': string;
  [k: string]: unknown;
}
interface Member {
  name: string;
  type: string;
  default?: null;
}

/** Structural equality of two introspections (names masked differently); features are not modelled by our DSL and are ignored. */
class Comparer {
  readonly ours: Map<string, Entry>;
  readonly theirs: Map<string, Entry>;
  readonly diffs: string[] = [];
  private readonly assumed = new Set<string>();
  constructor(ours: Entry[], theirs: Entry[]) {
    this.ours = new Map(ours.map((e) => [e.name, e]));
    this.theirs = new Map(theirs.map((e) => [e.name, e]));
  }
  same(a: string, b: string, path: string): void {
    const key = `${a}|${b}`;
    if (this.assumed.has(key)) return;
    this.assumed.add(key);
    const x = this.ours.get(a);
    const y = this.theirs.get(b);
    if (!x || !y) return void this.diffs.push(`${path}: missing (${a} ours: ${!!x}, ${b} theirs: ${!!y})`);
    const d = (what: string): void => {
      this.diffs.push(`${path}: ${what}`);
    };
    if (x['meta-type'] !== y['meta-type']) return d(`meta-type ${x['meta-type']} vs ${y['meta-type']}`);
    switch (x['meta-type']) {
      case 'builtin':
        if (x['json-type'] !== y['json-type']) d(`json-type ${x['json-type']} vs ${y['json-type']}`);
        break;
      case 'enum':
        if (JSON.stringify(x['values']) !== JSON.stringify(y['values'])) d(`values ${JSON.stringify(x['values'])} vs ${JSON.stringify(y['values'])}`);
        break;
      case 'array':
        this.same(x['element-type'] as string, y['element-type'] as string, `${path}[]`);
        break;
      case 'alternate': {
        const xm = x['members'] as Member[];
        const ym = y['members'] as Member[];
        if (xm.length !== ym.length) return d(`${xm.length} vs ${ym.length} alternatives`);
        xm.forEach((m, i) => this.same(m.type, ym[i]!.type, `${path}|${i}`));
        break;
      }
      case 'command':
      case 'event':
        this.same(x['arg-type'] as string, y['arg-type'] as string, `${path}(args)`);
        if (x['meta-type'] === 'command') this.same(x['ret-type'] as string, y['ret-type'] as string, `${path}(returns)`);
        break;
      case 'object': {
        const xm = x['members'] as Member[];
        const ym = y['members'] as Member[];
        const names = (ms: Member[]) => ms.map((m) => `${m.name}${'default' in m ? '?' : ''}`).join(',');
        if (names(xm) !== names(ym)) return d(`members ${names(xm)} vs ${names(ym)}`);
        xm.forEach((m, i) => this.same(m.type, ym[i]!.type, `${path}.${m.name}`));
        if (x['tag'] !== y['tag']) return d(`tag ${x['tag']} vs ${y['tag']}`);
        const xv = (x['variants'] ?? []) as Array<{ case: string; type: string }>;
        const yv = (y['variants'] ?? []) as Array<{ case: string; type: string }>;
        if (xv.map((v) => v.case).join() !== yv.map((v) => v.case).join()) return d(`variants ${xv.map((v) => v.case)} vs ${yv.map((v) => v.case)}`);
        xv.forEach((v, i) => this.same(v.type, yv[i]!.type, `${path}{${v.case}}`));
        break;
      }
      default:
        d(`unknown meta-type ${x['meta-type']}`);
    }
  }
}
