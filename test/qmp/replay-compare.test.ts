import { describe, expect, it } from 'vitest';
import { compareStreams, eventStreams, normaliseMessage, stableJson, streamKey, transientPauses } from '../../src/qmp/replay-compare.js';

const norm = { dirs: ['/rec/dir', '/replay/d'], ignoreKeys: new Set(['actual-size']) };
const jsc = (id: string, status: string) => ({ event: 'JOB_STATUS_CHANGE', data: { id, status }, timestamp: { seconds: 1, microseconds: 2 } });

describe('what a replay lets vary', () => {
  it('drops timestamps, names both directories ${DIR}, generated node names #block, ignored keys', () => {
    expect(normaliseMessage({ event: 'X', data: { f: '/rec/dir/a.qcow2' }, timestamp: { seconds: 1, microseconds: 0 } }, norm)).toEqual({ event: 'X', data: { f: '${DIR}/a.qcow2' } });
    expect(normaliseMessage({ return: [{ 'node-name': '#block417', file: '/replay/d/b', image: { 'actual-size': 5, 'virtual-size': 6 } }] }, norm)).toEqual({
      return: [{ 'node-name': '#block', file: '${DIR}/b', image: { 'virtual-size': 6 } }],
    });
  });

  it('drops which daemon and stable release answered, and how far a cancelled job got', () => {
    const greeting = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'Debian 1:7.2+dfsg-7' }, capabilities: ['oob'] } };
    expect(normaliseMessage(greeting, norm)).toEqual({ QMP: { version: { qemu: { major: 7, minor: 2 } }, capabilities: ['oob'] } });
    expect(normaliseMessage({ return: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'blockemu 0.1.0' }, id: 1 }, norm)).toEqual({ return: { qemu: { major: 7, minor: 2 } }, id: 1 });
    const cancelled = { event: 'BLOCK_JOB_CANCELLED', data: { device: 'j', len: 10, offset: 3, speed: 0, type: 'backup' }, timestamp: {} };
    expect(normaliseMessage(cancelled, norm)).toEqual({ event: 'BLOCK_JOB_CANCELLED', data: { device: 'j', len: 10, speed: 0, type: 'backup' } });
    // A completed job's offset stays: it says whether the job copied everything.
    expect(normaliseMessage({ ...cancelled, event: 'BLOCK_JOB_COMPLETED' }, norm)).toMatchObject({ data: { offset: 3 } });
  });

  it('keeps keys in any order equal', () => {
    expect(stableJson({ b: 1, a: { d: 2, c: [3, { f: 1, e: 0 }] } })).toBe(stableJson({ a: { c: [3, { e: 0, f: 1 }], d: 2 }, b: 1 }));
  });
});

describe('event streams', () => {
  it('groups a job’s events by its id or device, others by name and what they name', () => {
    expect(streamKey(jsc('j1', 'created'))).toBe('job j1');
    expect(streamKey({ event: 'BLOCK_JOB_COMPLETED', data: { device: 'j1' } })).toBe('job j1');
    expect(streamKey({ event: 'BLOCK_EXPORT_DELETED', data: { id: 'e0' } })).toBe('BLOCK_EXPORT_DELETED e0');
  });

  it('finds drain pauses (paused then running in one stream), not a pause that lasts', () => {
    const events = [jsc('a', 'created'), jsc('a', 'running'), jsc('b', 'paused'), jsc('a', 'paused'), jsc('a', 'running'), jsc('b', 'concluded')];
    expect([...transientPauses(events)].sort()).toEqual([3, 4]);
  });

  it('compares streams in order within each, not across them', () => {
    const one = [jsc('a', 'created'), jsc('b', 'created'), jsc('a', 'running'), jsc('b', 'running')].map((e) => normaliseMessage(e, norm));
    const other = [jsc('b', 'created'), jsc('b', 'running'), jsc('a', 'created'), jsc('a', 'running'), jsc('a', 'paused'), jsc('a', 'running')].map((e) => normaliseMessage(e, norm));
    expect(compareStreams(eventStreams(one), eventStreams(other))).toEqual([]);
    const swapped = [jsc('a', 'running'), jsc('a', 'created'), jsc('b', 'created'), jsc('b', 'running')].map((e) => normaliseMessage(e, norm));
    const diff = compareStreams(eventStreams(one), eventStreams(swapped));
    expect(diff).toHaveLength(1);
    expect(diff[0]).toContain('events of job a differ at #1');
    expect(compareStreams(eventStreams(one), eventStreams(one.slice(0, 3)))[0]).toContain('replayed: (none)');
  });
});
