/**
 * The monitor chardevs QEMU's Python harness uses: `-chardev socket,fd=N`
 * (python/qemu/machine hands qemu-system one end of a socketpair) and, for
 * qemu-storage-daemon, `--chardev stdio` (tests/qsd-jobs) and a client-mode
 * socket (iotests.py's QemuStorageDaemon listens, the daemon connects);
 * compared with qemu-system-x86_64 and qemu-storage-daemon.
 */
import { spawn } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BLOCKEMU, qemu, qemuImg, withTempDir } from '../helpers/qemu.js';
import { BASE, normaliseBytes, qemuSystem, spawnSystem, type SystemProg } from '../helpers/system.js';

const caps = '{"execute": "qmp_capabilities"}';
const quit = '{"execute": "quit"}';

/** Reads a socket to its end. */
const drain = (sock: Socket) =>
  new Promise<string>((resolve) => {
    let out = '';
    sock.setEncoding('latin1').on('data', (d: string) => (out += d));
    sock.on('error', () => undefined);
    sock.once('close', () => resolve(out));
  });

describe.skipIf(!qemuSystem.available)('-chardev socket,fd=N: a monitor on an inherited socket', () => {
  it('greets, answers and quits over fd 3 as qemu-system-x86_64 does', async () => {
    const run = async (p: SystemProg) => {
      // Node's 'pipe' for a child's extra descriptor is one end of a Unix socketpair, as python's socket.socketpair().
      const child = spawnSystem(p, [...BASE, '-M', 'none', '-chardev', 'socket,id=mon,fd=3', '-mon', 'chardev=mon,mode=control'], ['ignore', 'ignore', 'pipe', 'pipe']);
      const sock = child.stdio[3] as Socket;
      const out = drain(sock);
      sock.write(`${caps}\n{"execute": "query-status"}\n${quit}\n`);
      const code = await new Promise((r) => child.once('exit', r));
      return { out: normaliseBytes(await out), code };
    };
    const [q, b] = [await run('qemu'), await run('blockemu')];
    expect(b).toEqual(q);
    expect(b.out).toContain('{"return": {"status": "running", "singlestep": false, "running": true}}\r\n');
  });
});

describe.skipIf(!qemu.storageDaemon)('blockemu daemon: --chardev stdio and client-mode sockets', () => {
  /** tests/qsd-jobs' first case: a job still there at quit; its cancellation is announced before quit's reply. */
  it('--chardev stdio: a commit job still running at quit, as qemu-storage-daemon', async () => {
    await withTempDir(async (dir) => {
      const base = join(dir, 'base.qcow2');
      const top = join(dir, 'top.qcow2');
      await qemuImg('create', '-f', 'qcow2', base, '128M');
      await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
      const args = ['--chardev', 'stdio,id=stdio', '--monitor', 'chardev=stdio', '--blockdev', `node-name=file0,driver=file,filename=${top}`, '--blockdev', 'node-name=fmt0,driver=qcow2,file=file0'];
      const run = async (which: 'qsd' | 'blockemu') => {
        const child = which === 'qsd' ? spawn('qemu-storage-daemon', args) : spawn(process.execPath, [BLOCKEMU, 'daemon', ...args]);
        let out = '';
        child.stdout.setEncoding('latin1').on('data', (d: string) => (out += d));
        child.stdin.end(`${caps}\n{"execute": "block-commit", "arguments": {"device": "fmt0", "job-id": "job0"}}\n${quit}\n`);
        const code = await new Promise((r) => child.once('close', r));
        // As qsd-jobs filters them: their order around quit may differ between runs.
        const lines = normaliseBytes(out).split('\r\n').filter((l) => !/JOB_STATUS_CHANGE|BLOCK_JOB_READY/.test(l));
        return { lines, code };
      };
      const [q, b] = [await run('qsd'), await run('blockemu')];
      expect(b).toEqual(q);
      expect(b.lines.slice(-3)).toEqual([
        '{"timestamp": {"seconds": N, "microseconds": N}, "event": "BLOCK_JOB_CANCELLED", "data": {"device": "job0", "len": 0, "offset": 0, "speed": 0, "type": "commit"}}',
        '{"return": {}}',
        '',
      ]);
    });
  });

  it('--chardev socket without server=on connects to the listener, as iotests.py starts qemu-storage-daemon', async () => {
    await withTempDir(async (dir) => {
      const run = async (which: 'qsd' | 'blockemu') => {
        const path = join(dir, `${which}.sock`);
        const server = createServer();
        await new Promise<void>((r) => server.listen(path, r));
        const args = ['--chardev', `socket,id=qmp-sock,path=${path}`, '--monitor', 'qmp-sock', '--pidfile', join(dir, `${which}.pid`)];
        const child = which === 'qsd' ? spawn('qemu-storage-daemon', args, { stdio: 'ignore' }) : spawn(process.execPath, [BLOCKEMU, 'daemon', ...args], { stdio: 'ignore' });
        const sock = await new Promise<Socket>((r) => server.once('connection', r));
        server.close();
        const out = drain(sock);
        sock.write(`${caps}\n{"execute": "query-block-jobs"}\n${quit}\n`);
        const code = await new Promise((r) => child.once('exit', r));
        return { out: normaliseBytes(await out), code };
      };
      const [q, b] = [await run('qsd'), await run('blockemu')];
      expect(b).toEqual(q);
      expect(b.out.split('\r\n').slice(1)).toEqual(['{"return": {}}', '{"return": []}', '{"return": {}}', '']);
    });
  });
});
