/**
 * QmpClient's behaviour for users' tests: per-call timeouts, connecting to
 * a daemon that has not listened yet, errors that name the command and
 * point at the caller, events that every listener sees, asyncDispose —
 * against blockemu and against qemu-storage-daemon.
 */
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { QmpClient, QmpError, startDaemon } from '../../src/index.js';
import { qemu, withTempDir } from '../helpers/qemu.js';

/** A daemon with two NBD exports of a null node: deleting an export is one event (BLOCK_EXPORT_DELETED), on demand. */
const withExports = (ids: string[]) =>
  startDaemon({ blockdevs: [{ driver: 'null-co', 'node-name': 'n0' }], nbd: { exports: ids.map((id) => ({ id, name: id, 'node-name': 'n0' })) } });

/**
 * A QMP peer that greets, negotiates, and then holds every reply until the
 * test releases it — a daemon that is slow to answer, which neither
 * blockemu nor QEMU can be made to be on demand.
 */
async function slowPeer(dir: string) {
  const path = join(dir, 'slow.sock');
  const held: Array<() => void> = [];
  const conns: Socket[] = [];
  const server = createServer((s) => {
    conns.push(s);
    s.write('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\n');
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const req = JSON.parse(buf.slice(0, nl)) as { execute: string; id: number };
        buf = buf.slice(nl + 1);
        const reply = () => s.write(`${JSON.stringify({ return: { answered: req.execute }, id: req.id })}\n`);
        if (req.execute === 'qmp_capabilities') reply();
        else held.push(reply);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    held,
    close: () => new Promise<void>((r) => (conns.forEach((c) => c.destroy()), server.close(() => r()))),
  };
}

describe('QmpClient', () => {
  it('a per-call timeout rejects naming the command; the connection stays usable and the late reply is dropped', async () => {
    await withTempDir(async (dir) => {
      const peer = await slowPeer(dir);
      const c = await QmpClient.connect(peer.path);
      try {
        const late = c.execute('query-version', undefined, { timeoutMs: 50 });
        await expect(late).rejects.toThrow('query-version: no reply within 50 ms');
        // A default timeout from connect applies too; the call's own wins.
        const next = c.execute('query-block', {});
        while (peer.held.length < 2) await sleep(5);
        peer.held[0]!(); // the reply to the timed-out call: nobody takes it
        peer.held[1]!();
        expect(await next).toEqual({ answered: 'query-block' });
      } finally {
        await c.close();
      }
      const d = await QmpClient.connect(peer.path, { commandTimeoutMs: 30 });
      try {
        await expect(d.execute('query-jobs')).rejects.toThrow('query-jobs: no reply within 30 ms');
      } finally {
        await d.close();
        await peer.close();
      }
    });
  });

  it('connect retries until the socket appears, within its deadline; without one it fails at once', async () => {
    await withTempDir(async (dir) => {
      const socketPath = join(dir, 'later.sock');
      await expect(QmpClient.connect(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
      const connecting = QmpClient.connect(socketPath, { deadlineMs: 20_000 });
      await sleep(300);
      const d = await startDaemon({ socketPath });
      try {
        const c = await connecting;
        expect((await c.execute('query-version')).qemu.major).toBe(7);
        await c.close();
      } finally {
        await d.close();
        await rm(socketPath, { force: true });
      }
      await expect(QmpClient.connect(socketPath, { deadlineMs: 100 })).rejects.toThrow(`no QMP server on ${socketPath} within 100 ms`);
    });
  });

  it("an error names the command and carries the caller's stack", async () => {
    await using d = await startDaemon();
    const c = await d.client();
    async function deleteTheMissingNode() {
      return c.execute('blockdev-del', { 'node-name': 'nosuch' });
    }
    const err = (await deleteTheMissingNode().catch((e: unknown) => e)) as QmpError;
    expect(err).toBeInstanceOf(QmpError);
    expect({ command: err.command, qmpClass: err.qmpClass, desc: err.desc, message: err.message }).toEqual({
      command: 'blockdev-del',
      qmpClass: 'GenericError',
      desc: "Failed to find node with node-name='nosuch'",
      message: "blockdev-del: Failed to find node with node-name='nosuch'",
    });
    // The reply is handled in the socket's data callback; the stack is the call's.
    expect(err.stack).toContain('deleteTheMissingNode');
    expect(err.stack).toContain('client.test.ts');
    // So is a lost connection's.
    await c.close();
    const closed = (await deleteTheMissingNode().catch((e: unknown) => e)) as Error;
    expect(closed.message).toBe('blockdev-del: QMP connection closed');
    expect(closed.stack).toContain('deleteTheMissingNode');
  });

  it('two waiters waiting together both get the event; a later waiter still finds one nobody took', async () => {
    await using d = await withExports(['e1', 'e2']);
    const c = await d.client();
    const a = c.waitForEvent('BLOCK_EXPORT_DELETED');
    const b = c.waitForEvent('BLOCK_EXPORT_DELETED', (e) => e.data.id === 'e1');
    await c.execute('block-export-del', { id: 'e1' });
    const [ea, eb] = await Promise.all([a, b]);
    expect(ea.data).toEqual({ id: 'e1' });
    expect(eb).toEqual(ea);
    // Taken by the waiters: not in the backlog.
    expect(c.takeEvents()).toEqual([]);
    await c.execute('block-export-del', { id: 'e2' });
    // Arrived before anyone waited: kept, and consumed by the one that takes it.
    expect((await c.waitForEvent('BLOCK_EXPORT_DELETED')).data).toEqual({ id: 'e2' });
    await expect(c.waitForEvent('BLOCK_EXPORT_DELETED', undefined, 50)).rejects.toThrow('timed out after 50 ms waiting for event BLOCK_EXPORT_DELETED');
  });

  it('each iterator sees every event after it subscribed (from the call, not the first next()), beside waiters', async () => {
    await using d = await withExports(['e1', 'e2', 'e3']);
    const c = await d.client();
    const first = c.events();
    const second = c.events();
    const waiter = c.waitForEvent('BLOCK_EXPORT_DELETED', (e) => e.data.id === 'e2');
    for (const id of ['e1', 'e2', 'e3']) await c.execute('block-export-del', { id });
    expect((await waiter).data).toEqual({ id: 'e2' });
    const take = async (it: AsyncIterableIterator<{ event: string; data?: Record<string, unknown> }>, n: number) => {
      const out: unknown[] = [];
      for await (const e of it) {
        out.push(e.data?.['id']);
        if (out.length === n) break;
      }
      return out;
    };
    expect(await take(first, 3)).toEqual(['e1', 'e2', 'e3']);
    expect(await take(second, 3)).toEqual(['e1', 'e2', 'e3']);
    // The iterators took nothing: the events no waiter took are still there.
    expect(c.takeEvents().map((e) => e.data?.['id'])).toEqual(['e1', 'e3']);
    // An iterator ends when the connection closes.
    const third = c.events();
    await c.close();
    expect(await third.next()).toEqual({ value: undefined, done: true });
  });

  it('waitForAny: the first of several events that satisfies the predicate', async () => {
    await using d = await withExports(['a', 'b']);
    const c = await d.client();
    await c.execute('blockdev-add', { driver: 'null-co', 'node-name': 'n1', size: 1 << 20 });
    await c.execute('blockdev-add', { driver: 'null-co', 'node-name': 't1', size: 1 << 20 });
    const ended = c.waitForAny(['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'], (e) => e.data.device === 'j');
    const exportB = c.waitForAny(['BLOCK_EXPORT_DELETED', 'JOB_STATUS_CHANGE'], (e) => (e.event === 'BLOCK_EXPORT_DELETED' ? e.data.id === 'b' : false));
    await c.execute('block-export-del', { id: 'a' });
    await c.execute('block-export-del', { id: 'b' });
    expect((await exportB).data).toEqual({ id: 'b' });
    await c.execute('blockdev-backup', { 'job-id': 'j', device: 'n1', target: 't1', sync: 'full' });
    const e = await ended;
    expect(e.event).toBe('BLOCK_JOB_COMPLETED');
    expect(e.data).toMatchObject({ device: 'j', type: 'backup', len: 1 << 20, offset: 1 << 20 });
    await expect(c.waitForAny(['BLOCK_JOB_READY', 'BLOCK_JOB_ERROR'], () => true, { timeoutMs: 30 })).rejects.toThrow(
      'timed out after 30 ms waiting for any of the events BLOCK_JOB_READY, BLOCK_JOB_ERROR',
    );
    await expect(c.waitForAny(['JOB_STATUS_CHANGE'], () => { throw new Error('boom'); })).rejects.toThrow('the predicate waiting for event JOB_STATUS_CHANGE threw: boom');
  });

  it('Symbol.asyncDispose closes the client and the daemon at the end of the scope', async () => {
    let socketPath: string;
    let client: QmpClient;
    {
      await using d = await startDaemon();
      socketPath = d.socketPath;
      await using c = await d.client();
      client = c;
      expect((await c.execute('query-version')).qemu.major).toBe(7);
    }
    await expect(client.execute('query-version')).rejects.toThrow('query-version: QMP connection closed');
    await expect(QmpClient.connect(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe.skipIf(!qemu.storageDaemon)('QmpClient against qemu-storage-daemon', () => {
  it('types, errors, events and the escape hatch work the same', async () => {
    await withTempDir(async (dir) => {
      const sock = join(dir, 'qsd.sock');
      const proc = spawn(
        'qemu-storage-daemon',
        ['--blockdev', 'null-co,node-name=n0', '--nbd-server', `addr.type=unix,addr.path=${join(dir, 'nbd.sock')}`, '--export', 'nbd,id=e1,node-name=n0', '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m'],
        { stdio: 'ignore' },
      );
      const exited = new Promise((r) => proc.once('exit', r));
      try {
        await using c = await QmpClient.connect(sock, { deadlineMs: 20_000 });
        expect((await c.execute('query-version')).qemu).toMatchObject({ major: 7, minor: 2 });
        await expect(c.execute('blockdev-del', { 'node-name': 'nosuch' })).rejects.toMatchObject({ command: 'blockdev-del', qmpClass: 'GenericError' });
        const deleted = c.waitForEvent('BLOCK_EXPORT_DELETED', (e) => e.data.id === 'e1');
        await c.execute('block-export-del', { id: 'e1' });
        expect((await deleted).data).toEqual({ id: 'e1' });
        // A command only qemu-storage-daemon serves: untyped, as any name the schema does not know.
        expect(await c.execute<Array<{ label: string }>>('query-chardev')).toContainEqual(expect.objectContaining({ label: 'm' }));
      } finally {
        proc.kill();
        await exited;
      }
    });
  });
});
