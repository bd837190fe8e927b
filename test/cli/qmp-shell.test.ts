import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArgs, parseShellLine } from '../../src/cli/qmp-shell.js';
import { startDaemon } from '../../src/embed.js';
import { QmpClient } from '../../src/qmp/client.js';
import { BLOCKEMU, run, withTempDir } from '../helpers/qemu.js';

describe('blockemu qmp line syntax', () => {
  it('takes a command with JSON or key=value arguments', () => {
    expect(parseShellLine('query-version')).toEqual({ command: 'query-version' });
    expect(parseShellLine('query-named-block-nodes {"flat": true}')).toEqual({ command: 'query-named-block-nodes', args: { flat: true } });
    expect(parseShellLine('blockdev-del node-name=disk0')).toEqual({ command: 'blockdev-del', args: { 'node-name': 'disk0' } });
    expect(parseShellLine('x speed=100 on=true')).toEqual({ command: 'x', args: { speed: 100, on: true } });
    expect(parseShellLine('x {1')).toMatchObject({ error: expect.stringContaining('not valid JSON') });
    expect(parseShellLine('x [1]')).toEqual({ error: "expected key=value, got '[1]'" });
    expect(parseShellLine('x oops')).toEqual({ error: "expected key=value, got 'oops'" });
  });

  it('takes the shell\'s words: several key=value words (values may hold spaces), or JSON split into words', () => {
    expect(parseArgs(['node=n0', 'name=b0', 'granularity=65536'])).toEqual({ args: { node: 'n0', name: 'b0', granularity: 65536 } });
    expect(parseArgs(['filename=/tmp/a b.qcow2'])).toEqual({ args: { filename: '/tmp/a b.qcow2' } });
    expect(parseArgs(['{"flat":', 'true}'])).toEqual({ args: { flat: true } });
    expect(parseArgs([])).toEqual({});
    expect(parseArgs(['node=n0', 'oops'])).toEqual({ error: "expected key=value, got 'oops'" });
  });
});

describe('blockemu qmp against a daemon', () => {
  it('sends a command given several key=value words', async () => {
    const d = await startDaemon({ blockdevs: [{ driver: 'null-co', 'node-name': 'n0' }] });
    try {
      const r = await run(process.execPath, [BLOCKEMU, 'qmp', '-s', d.socketPath, 'block-dirty-bitmap-add', 'node=n0', 'name=b0', 'granularity=131072']);
      expect(r).toMatchObject({ code: 0, stdout: '{}\n', stderr: '' });
      const c = await d.client();
      const nodes = await c.execute<Array<{ 'dirty-bitmaps'?: unknown[] }>>('query-named-block-nodes');
      expect(nodes[0]!['dirty-bitmaps']).toMatchObject([{ name: 'b0', granularity: 131072 }]);
    } finally {
      await d.close();
    }
  });
});

/** A socket that accepts and never greets (qemu-storage-daemon while another client holds its monitor). */
async function silentServer(path: string): Promise<{ open: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    open: () => sockets.size,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('a monitor that accepts and never greets', () => {
  it('QmpClient.connect fails after its timeout and closes its socket', async () => {
    await withTempDir(async (dir) => {
      const srv = await silentServer(join(dir, 'silent.sock'));
      try {
        await expect(QmpClient.connect(join(dir, 'silent.sock'), { timeoutMs: 200 })).rejects.toThrow(/no QMP greeting/);
        for (let i = 0; i < 100 && srv.open() > 0; i++) await new Promise((r) => setTimeout(r, 10));
        expect(srv.open()).toBe(0);
      } finally {
        await srv.close();
      }
    });
  });

  it('QmpClient.connect fails at once when the server hangs up before greeting', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'rude.sock');
      const server = createServer((s) => s.destroy());
      await new Promise<void>((r) => server.listen(path, r));
      try {
        const t0 = Date.now();
        await expect(QmpClient.connect(path, { timeoutMs: 5000 })).rejects.toThrow(/before the QMP greeting/);
        expect(Date.now() - t0).toBeLessThan(2000);
      } finally {
        await new Promise((r) => server.close(r));
      }
    });
  });

  it('blockemu qmp says so and exits 2 instead of hanging', async () => {
    await withTempDir(async (dir) => {
      const srv = await silentServer(join(dir, 'silent.sock'));
      try {
        const t0 = Date.now();
        const r = await run(process.execPath, [BLOCKEMU, 'qmp', '-s', join(dir, 'silent.sock'), 'query-version']);
        expect(r).toMatchObject({ code: 2, stdout: '' });
        expect(r.stderr).toContain('no QMP greeting');
        expect(Date.now() - t0).toBeLessThan(20_000);
      } finally {
        await srv.close();
      }
    });
  }, 40_000);
});
