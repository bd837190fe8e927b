/**
 * Faults given on blockemu's command line (`--fault`), in a spawned
 * daemon: a crash fault mid-backup ends the process with its status,
 * leaving a target qemu-img check accepts; an error fault fails an NBD
 * client's write; a bad --fault fails the start in the option's words.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/qmp/client.js';
import { BLOCKEMU, qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;

interface Spawned {
  proc: ChildProcess;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function daemon(args: string[]): Spawned {
  const proc = spawn(process.execPath, [BLOCKEMU, 'daemon', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  return { proc, stderr: () => err, exit };
}

async function connect(path: string, d: Spawned): Promise<QmpClient> {
  for (let i = 0; i < 400; i++) {
    if (d.proc.exitCode !== null) throw new Error(`daemon exited with ${d.proc.exitCode}: ${d.stderr()}`);
    const c = await QmpClient.connect(path).catch(() => undefined);
    if (c) return c;
    await new Promise((r) => setTimeout(r, 25));
  }
  d.proc.kill('SIGKILL');
  throw new Error(`no QMP socket: ${d.stderr()}`);
}

const monitor = (path: string) => ['--chardev', `socket,id=m,path=${path},server=on,wait=off`, '--monitor', 'chardev=m'];

/** The fault log lines the daemon wrote (pino JSON on stderr). */
const faultLines = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => String(l['msg']).startsWith('fault fired'));

describe.skipIf(!qemu.available)('--fault on a spawned daemon', () => {
  const crashes = [
    { what: 'after 1 MiB written to the qcow2 target\'s file', fault: 'node-name=tf,id=boom,type=crash,point=after-bytes-written,bytes=1048576,status=42', node: 'tf' },
    { what: 'at 2 MiB of the backup job\'s progress', fault: 'node-name=tgt,id=boom,type=crash,point=job-progress,bytes=2097152,status=42', node: 'tgt' },
  ];
  it.each(crashes)('a crash $what: the daemon exits with the status at once; qemu-img check finds no corruption', async ({ fault, node }) => {
    await withTempDir(async (dir) => {
      const src = join(dir, 'src.raw');
      const tgt = join(dir, 'tgt.qcow2');
      expect((await qemuImg('create', '-f', 'raw', src, '8M')).code).toBe(0);
      expect((await qemuIo('-f', 'raw', '-c', 'write -P 0x33 0 8M', src)).code).toBe(0);
      expect((await qemuImg('create', '-f', 'qcow2', tgt, '8M')).code).toBe(0);
      const qmp = join(dir, 'qmp.sock');
      const d = daemon([
        '--blockdev', `driver=raw,node-name=src,file.driver=file,file.filename=${src}`,
        '--blockdev', `driver=qcow2,node-name=tgt,file.driver=file,file.node-name=tf,file.filename=${tgt}`,
        '--fault', fault,
        ...monitor(qmp),
      ]);
      const c = await connect(qmp, d);
      try {
        const backup = c.execute('blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tgt', sync: 'full' }).then(
          () => 'started',
          () => 'lost',
        );
        expect(await d.exit).toEqual({ code: 42, signal: null });
        void backup;
        // No completion reached the client: the job died with the process.
        expect(c.takeEvents().map((e) => e.event)).not.toContain('BLOCK_JOB_COMPLETED');
      } finally {
        await c.close();
      }
      const lines = faultLines(d.stderr());
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: 40, msg: 'fault fired: crashing', fault: 'boom', type: 'crash', node, hits: 1 });
      if (node === 'tgt') expect(lines[0]).toMatchObject({ job: 'j', progress: expect.any(Number) });
      if (node === 'tgt') expect(lines[0]!['progress']).toBeGreaterThanOrEqual(2 * MiB);
      // Crash-safe ordering: at worst leaked clusters (exit 3), never corruption (exit 2).
      const check = await qemuImg('check', '--output=json', tgt);
      expect([0, 3]).toContain(check.code);
      expect(JSON.parse(check.stdout)).toMatchObject({ 'check-errors': 0 });
      expect(JSON.parse(check.stdout)['corruptions'] ?? 0).toBe(0);
      // A MiB of data reached the file, but the table updates still in qcow2's cache died with the process: lost, not corrupt.
      expect((await stat(tgt)).size).toBeGreaterThan(MiB);
    });
  });

  /** A daemon with a 1 MiB raw node d0 under `fault`, exported writable over NBD as d0, and a client. */
  async function exportedRaw(dir: string, fault: string) {
    const img = join(dir, 'd.raw');
    expect((await qemuImg('create', '-f', 'raw', img, '1M')).code).toBe(0);
    const qmp = join(dir, 'qmp.sock');
    const nbd = join(dir, 'nbd.sock');
    const d = daemon([
      '--blockdev', `driver=raw,node-name=d0,file.driver=file,file.filename=${img}`,
      '--fault', fault,
      '--nbd-server', `addr.type=unix,addr.path=${nbd}`,
      '--export', 'type=nbd,id=e0,node-name=d0,writable=on',
      ...monitor(qmp),
    ]);
    return { d, c: await connect(qmp, d), nbd };
  }

  it('an error fault on an exported node fails the NBD client write it names, with its errno', async () => {
    await withTempDir(async (dir) => {
      const { d, c, nbd } = await exportedRaw(dir, 'node-name=d0,type=error,iotype=write,nth=2,errno=ENOSPC');
      try {
        const uri = `nbd+unix:///d0?socket=${nbd}`;
        const r = await qemuIo('-f', 'raw', '-c', 'write 0 4k', '-c', 'write 4k 4k', '-c', 'write 8k 4k', uri);
        expect(r.stdout).toMatch(/^wrote 4096\/4096 bytes at offset 0\n.*\nwrite failed: No space left on device\nwrote 4096\/4096 bytes at offset 8192\n/s);
        expect(await c.execute('__org.blockemu_query-faults')).toEqual([{ id: 'fault0', type: 'error', 'node-name': 'd0', matched: 2, hits: 1, spent: true }]);
        await c.execute('quit');
        expect(await d.exit).toEqual({ code: 0, signal: null });
      } finally {
        await c.close();
        d.proc.kill('SIGKILL');
      }
      expect(faultLines(d.stderr())).toMatchObject([{ fault: 'fault0', node: 'd0', iotype: 'write', offset: 4096, length: 4096, errno: 'ENOSPC' }]);
    });
  });

  it('quit with an NBD write held by a stall: the stall lets go, and the daemon exits', async () => {
    await withTempDir(async (dir) => {
      const { d, c, nbd } = await exportedRaw(dir, 'node-name=d0,id=hold,type=stall,iotype=write');
      try {
        const writer = qemuIo('-f', 'raw', '-c', 'write 0 4k', `nbd+unix:///d0?socket=${nbd}`);
        const waiting = async () => (await c.execute<Array<{ waiting?: number }>>('__org.blockemu_query-faults'))[0]!.waiting;
        for (let i = 0; i < 500 && (await waiting()) !== 1; i++) await new Promise((r) => setTimeout(r, 10));
        expect(await waiting()).toBe(1);
        await c.execute('quit');
        expect(await d.exit).toEqual({ code: 0, signal: null });
        await writer;
      } finally {
        await c.close();
        d.proc.kill('SIGKILL');
      }
    });
  });

  it('a --fault naming no node, or of no known type, fails the start in the option words', async () => {
    await withTempDir(async (dir) => {
      for (const [fault, message] of [
        ['node-name=nosuch,type=stall', "--fault node-name=nosuch,type=stall: Cannot find device='' nor node-name='nosuch'"],
        ['node-name=x,type=melt', "--fault node-name=x,type=melt: Parameter 'type' does not accept value 'melt'"],
      ] as const) {
        const d = daemon(['--fault', fault, ...monitor(join(dir, 'qmp.sock'))]);
        expect((await d.exit).code).toBe(1);
        expect(d.stderr()).toContain(message);
      }
    });
  });
});
