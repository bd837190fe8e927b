/**
 * The dispatcher against qemu-storage-daemon 7.2: the same requests, in the
 * same order, on a fresh connection to each; every reply must be identical
 * (error class, desc, id echo, return shape). Only commands whose replies do
 * not depend on the implementation (version strings, command lists) are
 * compared whole.
 */
import { ObjectRegistry } from '../../src/objects/registry.js';
import { BlockExports } from '../../src/export/exports.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { JobManager } from '../../src/jobs/manager.js';
import { jobEventListener } from '../../src/qmp/commands/jobs.js';
import { addControlCommands } from '../../src/qmp/commands/control.js';
import type { QmpContext } from '../../src/qmp/context.js';
import { CommandTable, dispatch, type SessionState } from '../../src/qmp/dispatch.js';
import { toQmpJson } from '../../src/qmp/json-out.js';
import { qemu } from '../helpers/qemu.js';
import { QsdSession } from '../helpers/qsd.js';

function ours(version = { qemu: { major: 7, minor: 2, micro: 22 }, package: 'blockemu' }): { send: (req: unknown) => Promise<unknown>; state: SessionState } {
  const commands = new CommandTable<QmpContext>();
  addControlCommands(commands);
  const state: SessionState = { negotiated: false, oob: false };
  const graph = new BlockGraph();
  const ctx: QmpContext = {
    session: state,
    commands,
    events: [],
    version,
    capabilities: ['oob'],
    graph,
    jobs: new JobManager(),
    jobEvents: jobEventListener(() => undefined, () => new JobManager()),
    exports: new BlockExports(graph, () => undefined),
    objects: new ObjectRegistry(graph.throttleGroups),
    quit: () => undefined,
  };
  // Through JSON both ways, as on the wire.
  return { send: async (req) => JSON.parse(JSON.stringify(await dispatch(commands, state, JSON.parse(JSON.stringify(req)), ctx))), state };
}

const BEFORE_NEGOTIATION: unknown[] = [
  { execute: 'query-version', id: 1 },
  { execute: 'nosuch' },
  [1, 2],
  'str',
  123,
  { id: 5 },
  { execute: 1, id: 'a' },
  { execute: 'qmp_capabilities', arguments: [] },
  { execute: 'qmp_capabilities', foo: 1, id: null },
  { execute: 'qmp_capabilities', 'exec-oob': 'x' },
  { execute: 'qmp_capabilities', arguments: { enable: 'oob' } },
  { execute: 'qmp_capabilities', arguments: { enable: ['foo'] } },
  { execute: 'qmp_capabilities', arguments: { enable: [1] } },
  { execute: 'qmp_capabilities', arguments: { enable: [null] } },
  { execute: 'qmp_capabilities', arguments: { bogus: 1 } },
  { execute: 'qmp_capabilities', id: [1, { a: 2 }] },
];
const AFTER_NEGOTIATION: unknown[] = [
  { execute: 'qmp_capabilities', id: 2 },
  { execute: 'nosuch', id: 3 },
  { execute: 'query-version', arguments: { x: 1 }, id: 4 },
  { 'exec-oob': 'query-version', id: 5 },
  { execute: 'quit', arguments: { now: true } },
  { id: { nested: [1, 2, 'x'] } },
  // Several faults at once: QEMU reports the first in its QDict's iteration order.
  { zzz: 1, arguments: 'x', execute: 5, aaa: 2, id: 6 },
  { arguments: 'x', execute: 5, id: 7 },
  { b: 1, a: 2, c: 3, execute: 'query-version', id: 8 },
];
const WITH_OOB: unknown[] = [
  { execute: 'qmp_capabilities', arguments: { enable: ['oob'] }, id: 'neg' },
  { 'exec-oob': 'query-version', id: 1 },
  { 'exec-oob': 'nosuch', id: 2 },
  { 'exec-oob': 7 },
  { execute: 'query-version', 'exec-oob': 'query-version', id: 3 },
  { 'exec-oob': 'query-version', execute: 'query-version', id: 4 },
  { execute: 'query-version', 'exec-oob': 1, arguments: 2, foo: 3, bar: 4, id: 5 },
];

describe.skipIf(!qemu.storageDaemon)('QMP dispatch vs qemu-storage-daemon', () => {
  let qsd: QsdSession;
  beforeAll(async () => {
    qsd = await QsdSession.start();
  });
  afterAll(() => qsd.close());

  it('offers the greeting QEMU offers', () => {
    expect(qsd.greeting).toMatchObject({ QMP: { capabilities: ['oob'], version: { qemu: { major: 7, minor: 2 } } } });
  });

  it('answers envelope, negotiation and argument errors identically', async () => {
    const b = ours();
    for (const req of [...BEFORE_NEGOTIATION, ...AFTER_NEGOTIATION]) {
      expect({ req, reply: await b.send(req) }).toEqual({ req, reply: await qsd.exchange(req) });
    }
  });

  it('with oob enabled: exec-oob of a command without allow-oob, and clashes', async () => {
    const other = await QsdSession.start();
    try {
      const b = ours();
      for (const req of WITH_OOB) expect({ req, reply: await b.send(req) }).toEqual({ req, reply: await other.exchange(req) });
      expect(b.state.oob).toBe(true);
    } finally {
      await other.close();
    }
  });
});

describe.skipIf(!qemu.storageDaemon)('QMP replies byte for byte', () => {
  it('serialises replies exactly as qemu-storage-daemon writes them (member order, spacing, escapes)', async () => {
    const qsd = await QsdSession.start();
    try {
      // The same version as this QEMU, so query-version's reply can be compared byte for byte too.
      // Built in schema member order (major, minor, micro), as a handler builds it: QDict order depends on insertion order.
      const v = (qsd.greeting as { QMP: { version: { qemu: { major: number; minor: number; micro: number }; package: string } } }).QMP.version;
      const b = ours({ qemu: { major: v.qemu.major, minor: v.qemu.minor, micro: v.qemu.micro }, package: v.package });
      const requests: unknown[] = [
        ...BEFORE_NEGOTIATION,
        { execute: 'nosuch-\u00e9\u{1f600}"\\\t', id: 'x\u0001y' },
        ...AFTER_NEGOTIATION,
        { execute: 'query-version', id: { b: [1.5, -2, 0.1, 1e-7, 123456789012], a: 'é', c: true, d: null } },
      ];
      for (const req of requests) {
        const ourLine = toQmpJson(await b.send(req));
        expect({ req, line: ourLine }).toEqual({ req, line: await qsd.exchangeRaw(req) });
      }
    } finally {
      await qsd.close();
    }
  });
});
