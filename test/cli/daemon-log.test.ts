/**
 * The daemon's structured log: --log-level after `daemon` (blockemu's own
 * option beside qemu-storage-daemon's), the global option and
 * BLOCKEMU_LOG_LEVEL; and what it tells at debug and trace: every QMP
 * command (client, id, duration, result class), job status changes, NBD
 * clients, and block-level failures at warn.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { parseDaemonArgs } from '../../src/cli/daemon-args.js';
import { planDaemon } from '../../src/cli/daemon.js';
import { QmpClient } from '../../src/qmp/client.js';
import { BLOCKEMU, withTempDir } from '../helpers/qemu.js';
import { connectSoon } from '../helpers/connect-soon.js';

type Line = Record<string, unknown> & { level: number; msg: string };

/** A daemon started with `pre` before `daemon` and `post` after it: a good backup, a failing one, a failing command, an NBD client; its log lines. */
async function session(dir: string, pre: string[], post: string[], env: Record<string, string> = {}): Promise<Line[]> {
  const sock = join(dir, 'qmp.sock');
  const nbd = join(dir, 'nbd.sock');
  const args = [
    ...pre, 'daemon', ...post,
    '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m',
    '--blockdev', 'driver=null-co,node-name=src,size=4194304',
    '--blockdev', 'driver=null-co,node-name=tgt,size=4194304',
    '--blockdev', JSON.stringify({ driver: 'blkdebug', 'node-name': 'bad', image: { driver: 'null-co', size: 4194304 }, 'inject-error': [{ event: 'none' }] }),
    '--nbd-server', `addr.type=unix,addr.path=${nbd}`,
  ];
  const proc = spawn(process.execPath, [BLOCKEMU, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise((r) => proc.once('exit', r));
  const c = await connectSoon(sock);
  await c.execute('blockdev-backup', { 'job-id': 'good', device: 'src', target: 'tgt', sync: 'full' }, );
  await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['id'] === 'good' && e.data?.['status'] === 'null');
  await c.execute('blockdev-backup', { 'job-id': 'bad', device: 'src', target: 'bad', sync: 'full' });
  await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['id'] === 'bad' && e.data?.['status'] === 'null');
  await c.execute('blockdev-del', { 'node-name': 'nosuch' }).catch(() => undefined);
  // An NBD client that connects and goes away without negotiating.
  await new Promise<void>((r) => {
    const s = connect(nbd, () => setTimeout(() => s.destroy(), 50));
    s.on('close', () => r());
    s.on('error', () => r());
  });
  await sleep(100);
  await c.execute('quit');
  await exited;
  return err
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
}

const LEVEL = { trace: 10, debug: 20, info: 30, warn: 40 } as const;

describe('the daemon log', () => {
  it('--log-level is a daemon option too (blockemu\'s, spelled in full)', () => {
    expect(parseDaemonArgs(['--log-level', 'debug', '--pidfile=p'])).toEqual([{ name: 'log-level', value: 'debug' }, { name: 'pidfile', value: 'p' }]);
    expect(planDaemon(parseDaemonArgs(['--log-level=trace'])).logLevel).toBe('trace');
    expect(() => planDaemon(parseDaemonArgs(['--log-level', 'loud']))).toThrow('--log-level loud: expected one of fatal, error, warn, info, debug, trace, silent');
    // An abbreviation keeps meaning what qemu-storage-daemon makes of it.
    expect(() => parseDaemonArgs(['--log', 'debug'])).toThrow("unrecognized option '--log'");
  });

  it('at debug (given after daemon): every command with client, id, duration and result; job states; NBD clients; failures at warn', async () => {
    await withTempDir(async (dir) => {
      const lines = await session(dir, [], ['--log-level', 'debug']);
      const commands = lines.filter((l) => l.msg === 'QMP command');
      const backup = commands.find((l) => l['command'] === 'blockdev-backup');
      expect(backup).toMatchObject({ level: LEVEL.debug, client: expect.stringMatching(/qmp\.sock#1$/), id: expect.any(Number), ms: expect.any(Number), result: 'ok' });
      expect(commands.find((l) => l['command'] === 'blockdev-del')).toMatchObject({ result: 'GenericError', desc: "Failed to find node with node-name='nosuch'" });
      expect(commands.map((l) => l['command'])).toEqual(['qmp_capabilities', 'blockdev-backup', 'blockdev-backup', 'blockdev-del', 'quit']);
      const good = lines.filter((l) => l.msg === 'job status' && l['job'] === 'good');
      expect(good.map((l) => l['status'])).toEqual(['created', 'running', 'paused', 'running', 'waiting', 'pending', 'concluded', 'null']);
      expect(good.filter((l) => l.level === LEVEL.info).map((l) => l['status'])).toEqual(['created', 'concluded']);
      expect(good.find((l) => l['status'] === 'concluded')).toMatchObject({ offset: 4194304, len: 4194304 });
      expect(lines.find((l) => l.msg === 'job status' && l['job'] === 'bad' && l['status'] === 'concluded')).toMatchObject({ error: 'Input/output error' });
      expect(lines.find((l) => l.msg === 'job I/O error')).toMatchObject({ level: LEVEL.warn, job: 'bad', operation: 'write', action: 'report' });
      expect(lines.filter((l) => l.msg.startsWith('NBD client')).map((l) => l.msg)).toEqual(['NBD client connected', 'NBD client disconnected']);
      expect(lines.some((l) => l.msg === 'QMP client connected' && l.level === LEVEL.debug)).toBe(true);
      expect(lines.some((l) => l.level < LEVEL.debug)).toBe(false);
    });
  }, 60_000);

  it('at trace (global option, or BLOCKEMU_LOG_LEVEL): requests and events too', async () => {
    await withTempDir(async (dir) => {
      for (const lines of [await session(dir, ['--log-level', 'trace'], []), await session(dir, [], [], { BLOCKEMU_LOG_LEVEL: 'trace' })]) {
        expect(lines.find((l) => l.msg === 'QMP request' && (l['request'] as { execute?: string }).execute === 'blockdev-del')).toMatchObject({ level: LEVEL.trace });
        expect(lines.some((l) => l.msg === 'QMP event' && l['event'] === 'BLOCK_JOB_COMPLETED')).toBe(true);
        expect(lines.filter((l) => l.msg === 'QMP command')).toHaveLength(5);
      }
    });
  }, 60_000);

  it('at the default level (warn) only failures are told', async () => {
    await withTempDir(async (dir) => {
      const lines = await session(dir, [], []);
      expect(lines.map((l) => [l.level, l.msg])).toEqual([[LEVEL.warn, 'job I/O error']]);
    });
  }, 60_000);
});
