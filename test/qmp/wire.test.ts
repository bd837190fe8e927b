/**
 * The QMP input parser against qemu-storage-daemon 7.2: the same raw bytes
 * on a negotiated connection to each, the same replies (parse errors,
 * recovery, limits), plus properties: any JSON value split anywhere parses
 * back the same; garbage never throws and a later message still parses.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { JobManager } from '../../src/jobs/manager.js';
import { addControlCommands } from '../../src/qmp/commands/control.js';
import { jobEventListener } from '../../src/qmp/commands/jobs.js';
import type { QmpContext } from '../../src/qmp/context.js';
import { CommandTable, dispatch } from '../../src/qmp/dispatch.js';
import type { ParsedItem } from '../../src/qmp/session.js';
import { createQmpParser } from '../../src/qmp/wire.js';
import { qemu } from '../helpers/qemu.js';
import { QsdSession } from '../helpers/qsd.js';

/** Our side: parser + dispatcher, replies as JSON values, in order. */
async function ours(version: QmpContext['version'], input: Buffer[]): Promise<unknown[]> {
  const commands = new CommandTable<QmpContext>();
  addControlCommands(commands);
  const session = { negotiated: true, oob: false };
  const ctx: QmpContext = { session, commands, events: [], version, capabilities: ['oob'], graph: new BlockGraph(), jobs: new JobManager(), jobEvents: jobEventListener(() => undefined, () => new JobManager()), quit: () => undefined };
  const items: ParsedItem[] = [];
  const p = createQmpParser((i) => items.push(i));
  for (const b of input) p.feed(b);
  const out: unknown[] = [];
  for (const item of items) out.push('error' in item ? { error: { class: 'GenericError', desc: item.error } } : JSON.parse(JSON.stringify(await dispatch(commands, session, item.value, ctx), (_k, v) => (typeof v === 'bigint' ? Number(v) : v))));
  return out;
}

const CASES: Array<[string, Buffer]> = [
  ['missing value', Buffer.from('{"execute": }')],
  ['a valid message after a broken one', Buffer.from('{"execute": }{"execute": "query-version", "id": 1}')],
  ['a stray closer after a message', Buffer.from('{"execute":"query-version", "id": 2} }')],
  ['top-level array, string, number', Buffer.from('[1,2] "str" 123 ')],
  ['single quotes', Buffer.from("{'execute': 'query-version', 'id': 'sq'}")],
  ['bad keyword', Buffer.from('{"execute": tru}')],
  ['duplicate key', Buffer.from('{"execute": "query-version", "execute": "x"}')],
  ['missing colon', Buffer.from('{"execute" "query-version"}')],
  ['key not a string', Buffer.from('{1: 2}')],
  ['separator in dict', Buffer.from('{"execute": "x" "y"}')],
  ['separator in list', Buffer.from('{"id": [1 2], "execute": "x"}')],
  ['stray character', Buffer.from('@{"execute": "query-version", "id": 3}')],
  ['unicode escapes', Buffer.from('{"execute": "query-version", "id": "\\u00e9\\ud83d\\ude00 \\/ \\t"}')],
  ['bad escape', Buffer.from('{"execute": "query-version", "id": "\\q"} {"execute": "query-version", "id": 4}')],
  ['lone surrogate', Buffer.from('{"execute": "query-version", "id": "\\udc00"}')],
  ['high surrogate without its pair', Buffer.from('{"execute": "query-version", "id": "\\ud800x"}')],
  ['NUL escape', Buffer.from('{"execute": "query-version", "id": "a\\u0000b"}')],
  ['invalid UTF-8', Buffer.from([...Buffer.from('{"execute": "query-version", "id": "'), 0xc3, 0x28, ...Buffer.from('"}')])],
  ['raw UTF-8', Buffer.from('{"execute": "query-version", "id": "é€😀"}')],
  ['nesting beyond 1024', Buffer.from(`${'['.repeat(1025)}${']'.repeat(1025)}{"execute": "query-version", "id": 5}`)],
  ['nesting of exactly 1024', Buffer.from(`{"execute": "query-version", "id": ${'['.repeat(1023)}${']'.repeat(1023)}}`)],
  ['big and negative numbers', Buffer.from('{"execute": "query-version", "id": [18446744073709551615, -9223372036854775808, 1.5e300, -0.25]}')],
  ['control character reset', Buffer.from('{"execute": "query-\x01version"}{"execute": "query-version", "id": 6}')],
  ['0xff reset', Buffer.from([...Buffer.from('{"execute": '), 0xff, ...Buffer.from('{"execute": "query-version", "id": 7}')])],
  ['uppercase keyword', Buffer.from('{"execute": True}')],
  ['bad number', Buffer.from('{"execute": 1.}')],
];

describe.skipIf(!qemu.storageDaemon)('QMP input parsing vs qemu-storage-daemon', () => {
  it.each(CASES)('%s', async (_name, bytes) => {
    const qsd = await QsdSession.start();
    try {
      await qsd.exchange({ execute: 'qmp_capabilities' });
      const theirs = await qsd.send(bytes, 300);
      const v = (qsd.greeting as { QMP: { version: QmpContext['version'] } }).QMP.version;
      const mine = await ours({ qemu: { major: v.qemu.major, minor: v.qemu.minor, micro: v.qemu.micro }, package: v.package }, [bytes]);
      expect(mine).toEqual(theirs);
    } finally {
      await qsd.close();
    }
  });
});

describe('QMP input parser properties', () => {
  it('any JSON object, split at any points, parses back the same', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 5 })), fc.array(fc.nat(), { maxLength: 8 }), (obj, cuts) => {
        const bytes = Buffer.from(JSON.stringify(obj));
        const items: ParsedItem[] = [];
        const p = createQmpParser((i) => items.push(i));
        let at = 0;
        for (const c of [...cuts.map((x) => x % (bytes.length + 1))].sort((a, b) => a - b)) {
          p.feed(bytes.subarray(at, c));
          at = c;
        }
        p.feed(bytes.subarray(at));
        expect(items).toHaveLength(1);
        // Integers beyond 2^53 come back as bigints (exact); JSON.parse rounds them.
        const exact = JSON.parse(JSON.stringify((items[0] as { value: unknown }).value, (_k, v) => (typeof v === 'bigint' ? Number(v) : v)));
        expect(exact).toEqual(JSON.parse(bytes.toString()));
      }),
    );
  });

  it('garbage never throws, stays bounded, and a message after a resync point parses', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (garbage) => {
        const items: ParsedItem[] = [];
        const p = createQmpParser((i) => items.push(i), { maxTokenBytes: 4096, maxTokens: 256, maxNesting: 32 });
        p.feed(garbage);
        // A control character resets the lexer; an unbalanced opener is closed by the error it causes below.
        p.feed(Buffer.from('\x01'));
        items.length = 0;
        p.feed(Buffer.from(`${']'.repeat(40)}${'}'.repeat(40)}\x01{"execute": "x"}`));
        const last = items[items.length - 1];
        expect(last).toEqual({ value: { execute: 'x' } });
      }),
    );
  });
});
