/**
 * `blockemu daemon` as a process, driven over its socket like
 * qemu-storage-daemon: command line, negotiation, quit and signals, socket
 * and pidfile lifecycle, several monitors and clients.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { QmpClient } from '../src/qmp/client.js';
import { QmpError } from '../src/qmp/error.js';
import { BLOCKEMU, qemu, run, withTempDir } from './helpers/qemu.js';
import { connectSoon } from './helpers/connect-soon.js';

const exists = (p: string) => access(p).then(() => true, () => false);

async function startDaemon(args: string[]): Promise<{ proc: ChildProcess; exit: Promise<number | null>; stderr: () => string }> {
  const proc = spawn(process.execPath, [BLOCKEMU, 'daemon', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, exit, stderr: () => err };
}

async function waitFor(path: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await exists(path)) return;
    await sleep(25);
  }
  throw new Error(`${path} never appeared`);
}

const monitorArgs = (sock: string, id = 'm') => ['--chardev', `socket,id=${id},path=${sock},server=on,wait=off`, '--monitor', `chardev=${id}`];

describe('blockemu daemon', () => {
  it('serves QMP, writes the pidfile, and on quit removes socket and pidfile and exits 0', async () => {
    await withTempDir(async (dir) => {
      const sock = join(dir, 'qmp.sock');
      const pid = join(dir, 'd.pid');
      const d = await startDaemon([...monitorArgs(sock), '--pidfile', pid]);
      await waitFor(pid);
      const c = await QmpClient.connect(sock);
      expect(c.greeting).toMatchObject({ QMP: { version: { qemu: { major: 7, minor: 2 } }, capabilities: ['oob'] } });
      expect(await c.execute('query-version')).toMatchObject({ package: expect.stringContaining('blockemu') });
      await expect(c.execute('nosuch')).rejects.toEqual(new QmpError('CommandNotFound', 'The command nosuch has not been found', 'nosuch'));
      expect(await c.execute('quit')).toEqual({});
      expect(await d.exit).toBe(0);
      expect(await exists(sock)).toBe(false);
      expect(await exists(pid)).toBe(false);
    });
  });

  it.each(['SIGTERM', 'SIGINT'] as const)('exits 0 on %s, cleaning up', async (signal) => {
    await withTempDir(async (dir) => {
      const sock = join(dir, 'qmp.sock');
      const d = await startDaemon(monitorArgs(sock));
      await waitFor(sock);
      const c = await QmpClient.connect(sock);
      d.proc.kill(signal);
      expect(await d.exit).toBe(0);
      expect(await exists(sock)).toBe(false);
      await c.close();
    });
  });

  it.each([
    ['only --blockdev', ['--blockdev', 'driver=null-co,node-name=n0']],
    ['only --pidfile', []],
  ])('with neither a monitor nor an NBD server (%s) keeps running, as qemu-storage-daemon does, until SIGTERM', async (_what, args) => {
    await withTempDir(async (dir) => {
      const pid = join(dir, 'd.pid');
      const d = await startDaemon([...args, '--pidfile', pid]);
      let exited = false;
      void d.exit.then(() => (exited = true));
      await waitFor(pid);
      await sleep(500);
      expect({ exited, stderr: d.stderr() }).toEqual({ exited: false, stderr: '' });
      d.proc.kill('SIGTERM');
      expect(await d.exit).toBe(0);
      expect(await exists(pid)).toBe(false);
    });
  });

  it('serves several monitors and several clients on one monitor at once', async () => {
    await withTempDir(async (dir) => {
      const a = join(dir, 'a.sock');
      const b = join(dir, 'b.sock');
      const d = await startDaemon([...monitorArgs(a, 'ma'), ...monitorArgs(b, 'mb')]);
      await waitFor(b);
      const clients = await Promise.all([QmpClient.connect(a), QmpClient.connect(a), QmpClient.connect(b)]);
      const answers = await Promise.all(clients.map((c) => c.execute<Array<{ name: string }>>('query-commands')));
      for (const list of answers) expect(list.map((x) => x.name)).toContain('query-qmp-schema');
      // Negotiation is per connection.
      const fresh = await QmpClient.connect(a, { negotiate: false });
      await expect(fresh.execute('query-version')).rejects.toMatchObject({ qmpClass: 'CommandNotFound' });
      await clients[0]!.execute('quit');
      expect(await d.exit).toBe(0);
    });
  });

  it('replaces a stale socket file and refuses a live one', async () => {
    await withTempDir(async (dir) => {
      const sock = join(dir, 'qmp.sock');
      // A stale socket file: its server was killed before it could remove it.
      const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`]);
      await new Promise((r) => child.once('exit', r));
      expect(await exists(sock)).toBe(true);
      const d = await startDaemon(monitorArgs(sock));
      const c = await connectSoon(sock);
      // A second daemon on the same path must refuse, naming the path, and leave the first one serving.
      const second = await startDaemon(monitorArgs(sock));
      expect(await second.exit).toBe(1);
      expect(second.stderr()).toContain(sock);
      await c.execute('quit');
      expect(await d.exit).toBe(0);
    });
  });

  it('blockemu qmp: one-shot commands, errors and an unreachable socket', async () => {
    await withTempDir(async (dir) => {
      const sock = join(dir, 'qmp.sock');
      const d = await startDaemon(monitorArgs(sock));
      await waitFor(sock);
      const ok = await run(process.execPath, [BLOCKEMU, 'qmp', '-s', sock, 'query-version']);
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ qemu: { major: 7 } });
      const bad = await run(process.execPath, [BLOCKEMU, 'qmp', '-s', sock, 'query-version', '{"x": 1}']);
      expect(bad).toMatchObject({ code: 1, stderr: "GenericError: Parameter 'x' is unexpected\n" });
      const gone = await run(process.execPath, [BLOCKEMU, 'qmp', '-s', join(dir, 'nothing.sock'), 'query-version']);
      expect(gone.code).toBe(2);
      expect(gone.stderr).toContain('cannot connect');
      await run(process.execPath, [BLOCKEMU, 'qmp', '-s', sock, 'quit']);
      expect(await d.exit).toBe(0);
    });
  });

  it('drops a client that stops reading once its pending output passes the bound; others are unaffected', async () => {
    const { startDaemon: start, internalDaemon } = await import('../src/embed.js');
    const { connect } = await import('node:net');
    const d = await start();
    try {
      const canary = await d.client();
      const slow = connect(d.socketPath);
      await new Promise((r) => slow.once('connect', r));
      slow.pause(); // never reads
      slow.on('error', () => undefined);
      slow.write('{"execute":"qmp_capabilities"}\n');
      // Each schema reply is tens of KiB: thousands of them pass the 16 MiB bound.
      slow.write('{"execute":"query-qmp-schema"}\n'.repeat(3000));
      const monitor = internalDaemon(d).monitors[0]!;
      for (let i = 0; monitor.clientCount > 1; i++) {
        if (i > 3000) throw new Error('the client that does not read was never dropped');
        await sleep(10);
      }
      expect(await canary.execute('query-version')).toMatchObject({ qemu: { major: 7 } });
      slow.destroy();
    } finally {
      await d.close();
    }
  }, 60_000);

  it('holds the commands of a client that connects while start-up is unfinished until it is, so no job event is lost', async () => {
    await withTempDir(async (dir) => {
      const sock = join(dir, 'qmp.sock');
      // A FIFO as the pidfile: the daemon's start blocks on writing it (after the monitor listens) until it is read.
      const pid = join(dir, 'd.pid');
      expect((await run('mkfifo', [pid])).code).toBe(0);
      const d = await startDaemon([
        '--blockdev', 'driver=null-co,node-name=src,size=1048576',
        '--blockdev', 'driver=null-co,node-name=tgt,size=1048576',
        ...monitorArgs(sock), '--pidfile', pid,
      ]);
      await waitFor(sock);
      // The client negotiates and starts a job at once, without waiting for the daemon.
      let negotiated = false;
      const session = QmpClient.connect(sock).then((c) => {
        negotiated = true;
        return { c, backup: c.execute('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full' }) };
      });
      await sleep(200);
      // As QEMU's monitors, nothing is served before the main loop runs.
      expect(negotiated).toBe(false);
      const pidText = (await run('cat', [pid])).stdout;
      expect(pidText.trim()).toBe(String(d.proc.pid));
      const { c, backup } = await session;
      expect(await backup).toEqual({});
      await c.waitForEvent('BLOCK_JOB_COMPLETED');
      const statuses = c.takeEvents().filter((e) => e.event === 'JOB_STATUS_CHANGE').map((e) => (e.data as { status: string }).status);
      expect(statuses.slice(0, 2)).toEqual(['created', 'running']);
      expect(await c.execute('quit')).toEqual({});
      expect(await d.exit).toBe(0);
    });
  });

  it('makes the socket owner-only', async () => {
    await withTempDir(async (dir) => {
      const sock = join(dir, 'qmp.sock');
      const d = await startDaemon(monitorArgs(sock));
      await waitFor(sock);
      const { stat } = await import('node:fs/promises');
      expect((await stat(sock)).mode & 0o777).toBe(0o600);
      d.proc.kill('SIGTERM');
      expect(await d.exit).toBe(0);
    });
  });
});

/** Command-line mistakes: the same message as qemu-storage-daemon (under our program name) and a non-zero exit. */
describe.skipIf(!qemu.storageDaemon)('blockemu daemon command line vs qemu-storage-daemon', () => {
  it.each([
    [['--foo']],
    [['-x']],
    [['--chardev']],
    [['extra']],
    [['--chardev', 'socket']],
    [['--monitor', 'chardev=nope']],
    // qemu-storage-daemon creates the chardev's socket before it refuses the monitor (and leaves it): a directory of the test's own.
    [['--chardev', 'socket,id=m,path=${DIR}/never.sock,server=on,wait=off', '--monitor', 'chardev=m,mode=readline']],
    [['--pidfile']],
    [['--daemonize=yes']],
  ])('%j', async (given) => {
    await withTempDir(async (dir) => {
      const args = given.map((a) => a.replaceAll('${DIR}', dir));
      const q = await run('qemu-storage-daemon', args);
      const b = await run(process.execPath, [BLOCKEMU, 'daemon', ...args]);
      expect(q.code).not.toBe(0);
      expect({ code: b.code === 0 ? 0 : 1, stderr: b.stderr.replaceAll('blockemu daemon', 'qemu-storage-daemon') }).toEqual({ code: 1, stderr: q.stderr });
    });
  });
});
