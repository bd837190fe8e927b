/**
 * The quorum driver over QMP, the same session played against
 * qemu-storage-daemon 7.2 and blockemu's daemon: blockdev-add's refusals
 * (threshold, children, blkverify, read-pattern), the node as queries
 * describe it (its json: name lists its children), writes into it (a
 * backup into the quorum reaches every child), reads voting over children
 * one of which was changed behind its back (QUORUM_REPORT_BAD for the
 * outvoted child, rewrite-corrupted writing it back), a read no version
 * wins (QUORUM_FAILURE) and the fifo pattern. Replies, events and the
 * children's bytes must be equal.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, withDaemon } from '../helpers/bitmap-daemon.js';
import { answer } from '../helpers/qmp-transcript.js';
import { qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';
import type { QmpClient } from '../../src/qmp/client.js';

const MiB = 1 << 20;

/** Writes `pattern` over [offset, offset+len) of a raw file behind the quorum's back. */
async function poke(path: string, pattern: number, offset: number, len: number): Promise<void> {
  const r = await run('qemu-io', ['-f', 'raw', '-c', `write -q -P ${pattern} ${offset} ${len}`, path]);
  expect(r.code).toBe(0);
}

async function session(which: Daemon, dir: string): Promise<unknown[]> {
  const t: unknown[] = [];
  const f = (name: string) => join(dir, name);
  const raw = (i: number) => ({ driver: 'raw', 'node-name': `c${i}`, file: { driver: 'file', 'node-name': `f${i}`, filename: f(`${i}.raw`), locking: 'off' } });
  await withDaemon(
    which,
    join(dir, 'd'),
    async (c: QmpClient) => {
      const say = async (cmd: string, args: Record<string, unknown>) => t.push([cmd, await answer(c, cmd, args)]);
      const events = () => t.push(c.takeEvents().filter((e) => e.event.startsWith('QUORUM') || e.event === 'BLOCK_JOB_COMPLETED').map((e) => [e.event, e.data]));
      const backup = async (id: string, device: string, target: string) => {
        await say('blockdev-backup', { 'job-id': id, device, target, sync: 'full' });
        await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === id);
        // Quorum's events are sent at most once a second (QEMU's monitor holds the rest): wait out the period.
        await sleep(1200);
        events();
      };
      const children = [raw(1), raw(2), raw(3)];
      await say('blockdev-add', { driver: 'quorum', 'node-name': 'x', 'vote-threshold': 0, children });
      await say('blockdev-add', { driver: 'quorum', 'node-name': 'x', 'vote-threshold': 4, children });
      await say('blockdev-add', { driver: 'quorum', 'node-name': 'x', 'vote-threshold': 2, children: [] });
      await say('blockdev-add', { driver: 'quorum', 'node-name': 'x', 'vote-threshold': 2, blkverify: true, children });
      await say('blockdev-add', { driver: 'quorum', 'node-name': 'x', 'vote-threshold': 2, blkverify: true, 'rewrite-corrupted': true, children: [raw(1), raw(2)] });
      await say('blockdev-add', { driver: 'quorum', 'node-name': 'q', 'vote-threshold': 2, 'rewrite-corrupted': true, children });
      const nodes = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: false });
      t.push(nodes.find((n) => n['node-name'] === 'q'));
      // Written through: a backup of a patterned image into the quorum.
      await say('blockdev-add', { driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: f('src.raw') } });
      await say('blockdev-add', { driver: 'raw', 'node-name': 'out', file: { driver: 'file', filename: f('out.raw') } });
      await backup('in', 'src', 'q');
      // One child differs: outvoted, reported, and (rewrite-corrupted) written back as the read goes.
      await poke(f('2.raw'), 0x3d, 0, 512);
      await backup('r1', 'q', 'out');
      // Two children differ alike: their version wins the vote.
      await poke(f('1.raw'), 0x3d, 64 * 1024, 512);
      await poke(f('3.raw'), 0x3d, 64 * 1024, 512);
      await backup('r2', 'q', 'out');
      await say('blockdev-del', { 'node-name': 'q' });
      // All three differ: no version has two votes.
      await poke(f('1.raw'), 0x11, 128 * 1024, 512);
      await poke(f('2.raw'), 0x22, 128 * 1024, 512);
      await say('blockdev-add', { driver: 'quorum', 'node-name': 'q2', 'vote-threshold': 2, children: [raw(1), raw(2), raw(3)] });
      await backup('r3', 'q2', 'out');
      await say('blockdev-del', { 'node-name': 'q2' });
      await say('blockdev-add', { driver: 'quorum', 'node-name': 'q3', 'vote-threshold': 1, 'read-pattern': 'fifo', children: [raw(2), raw(1)] });
      await backup('r4', 'q3', 'out');
      // x-blockdev-change: children added and taken away, and its refusals.
      await say('blockdev-add', raw(4));
      await say('x-blockdev-change', { parent: 'q3', node: 'c4' });
      await say('x-blockdev-change', { parent: 'q3', node: 'c4' });
      await say('x-blockdev-change', { parent: 'q3', node: 'nosuch' });
      await say('x-blockdev-change', { parent: 'q3', child: 'children.9' });
      await say('x-blockdev-change', { parent: 'q3' });
      await say('x-blockdev-change', { parent: 'q3', child: 'children.0', node: 'c4' });
      await say('x-blockdev-change', { parent: 'out', node: 'src' });
      await say('x-blockdev-change', { parent: 'out', child: 'file' });
      await say('x-blockdev-change', { parent: 'q3', child: 'children.0' });
      await say('x-blockdev-change', { parent: 'q3', child: 'children.2' });
      await say('x-blockdev-change', { parent: 'q3', child: 'children.1' });
      const after = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
      t.push(after.find((n) => n['node-name'] === 'q3')?.['file']);
      await say('blockdev-del', { 'node-name': 'q3' });
      await say('blockdev-add', { driver: 'quorum', 'node-name': 'q4', 'vote-threshold': 2, blkverify: true, children: [raw(1), raw(2)] });
      await say('blockdev-add', raw(3));
      await say('x-blockdev-change', { parent: 'q4', node: 'c3' });
    },
    { bare: true },
  );
  return JSON.parse(JSON.stringify(t).replaceAll(dir, 'DIR')) as unknown[];
}

describe.skipIf(!qemu.available)('the quorum driver over QMP (vs qemu-storage-daemon)', () => {
  it('refuses, opens, names, writes and votes as qsd does', async () => {
    await withTempDir(async (dir) => {
      for (const side of ['q', 'b']) {
        await mkdir(join(dir, side));
        for (const name of ['1.raw', '2.raw', '3.raw', '4.raw', 'out.raw']) expect((await qemuImg('create', '-q', '-f', 'raw', join(dir, side, name), `${MiB}`)).code).toBe(0);
        expect((await qemuImg('create', '-q', '-f', 'raw', join(dir, side, 'src.raw'), `${MiB}`)).code).toBe(0);
        await poke(join(dir, side, 'src.raw'), 0x32, 0, MiB);
      }
      const q = await session('qsd', join(dir, 'q'));
      const b = await session('blockemu', join(dir, 'b'));
      expect(b).toEqual(q);
      // The session got as far as it should: the outvoted child was reported.
      expect(JSON.stringify(b)).toContain('QUORUM_REPORT_BAD');
      expect(JSON.stringify(b)).toContain('QUORUM_FAILURE');
      for (const name of ['1.raw', '2.raw', '3.raw', 'out.raw']) expect(Buffer.compare(await readFile(join(dir, 'b', name)), await readFile(join(dir, 'q', name)))).toBe(0);
    });
  });
});
