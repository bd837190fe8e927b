import { describe, expect, it } from 'vitest';
import { SUPPORTED_DRIVERS } from '../../src/blockdev/open.js';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';
import { RawQmp } from '../helpers/raw-qmp.js';
import { BASE, hmpTranscript, qemuSystem, qmpTranscript, runSystem, spawnSystem, type SystemProg } from '../helpers/system.js';

const both = async <T>(f: (p: SystemProg) => Promise<T>): Promise<[T, T]> => [await f('qemu'), await f('blockemu')];

describe.skipIf(!qemuSystem.available)('blockemu system against qemu-system-x86_64: probes', () => {
  it('-machine help lists the same machines, pc the default', async () => {
    const [q, b] = await both((p) => runSystem(p, ['-machine', 'help']));
    expect(b).toEqual(q);
    expect(b.stdout).toMatch(/^pc-i440fx-7\.2 +.* \(default\)$/m);
  });

  it("-M none -device help lists QEMU's storage devices, line for line", async () => {
    const [q, b] = await both((p) => runSystem(p, ['-M', 'none', '-device', 'help']));
    const section = q.stdout.slice(q.stdout.indexOf('Storage devices:\n'));
    expect(b.code).toBe(0);
    expect(b.stdout).toBe(section.slice(0, section.indexOf('\n\n') + 1));
    expect(b.stdout).toContain('name "virtio-blk-pci", bus PCI, alias "virtio-blk"\n');
  });

  it('-drive format=help lists the drivers blockemu implements, in the layout QEMU prints', async () => {
    const [q, b] = await both((p) => runSystem(p, ['-M', 'none', '-drive', 'format=help']));
    const layout = (s: string) => s.replace(/: .*$/gm, ': LIST');
    expect(layout(b.stdout)).toBe(layout(q.stdout));
    const list = [...SUPPORTED_DRIVERS].sort().join(' ');
    expect(b.stdout).toBe(`Supported formats: ${list}\nSupported formats (read-only): ${list}\n`);
  });

  it('-version names QEMU 7.2 as qemu-system does', async () => {
    const [q, b] = await both((p) => runSystem(p, ['-version']));
    const lines = (s: string) => s.split('\n');
    expect(lines(b.stdout)[0]).toBe('QEMU emulator version 7.2.0 (blockemu 0.1.0)');
    expect(lines(b.stdout)[0]!.split(' (')[0]!.replace(/\.\d+$/, '')).toBe(lines(q.stdout)[0]!.split(' (')[0]!.replace(/\.\d+$/, ''));
    expect(lines(b.stdout).slice(1)).toEqual(lines(q.stdout).slice(1));
  });
});

describe.skipIf(!qemuSystem.available)('blockemu system against qemu-system-x86_64: refusals', () => {
  const cases: string[][] = [
    ['-foo'],
    ['-M', 'none', '-drive'],
    ['-M', 'none', '--blockdev'],
    ['-M', 'foo'],
    ['-M', 'none', '-mon', 'chardev=x'],
    ['-M', 'none', '-accel', 'foo'],
    ['-M', 'none', '-chardev', 'socket,id=mon,path=/nonexistent/blockemu.sock', '-mon', 'chardev=mon,mode=control'],
    ['-M', 'none', '-qmp', 'unix:/nonexistent/blockemu.sock'],
    ['-M', 'none', '-set', 'device.nope.x=y'],
    ['-M', 'none', '-set', 'foo'],
    ['-M', 'none', '-loadvm', 'snap0', '-incoming', 'defer'],
    ['-M', 'none', '-loadvm', 'snap0', '-preconfig'],
  ];
  for (const args of cases) {
    it(`refuses ${args.join(' ')} with QEMU's message and exit code`, async () => {
      const [q, b] = await both((p) => runSystem(p, ['-display', 'none', ...args]));
      expect({ code: b.code, stderr: b.stderr, stdout: b.stdout }).toEqual({ code: q.code, stderr: q.stderr, stdout: q.stdout });
      expect(b.code).toBe(1);
    });
  }

  it('refuses what a storage-only process cannot honour, saying so', async () => {
    for (const args of [['-smp', '2'], ['-display', 'gtk'], ['-mon', 'chardev=c', '-chardev', 'null,id=c'], ['-monitor', 'vc']]) {
      const b = await runSystem('blockemu', ['-M', 'none', ...args]);
      expect(b.code).toBe(1);
      expect(b.stderr).toMatch(/^qemu-system-x86_64: .*(not supported|only)/);
    }
  });
});

const caps = '{"execute": "qmp_capabilities"}';
const quit = '{"execute": "quit"}';

describe.skipIf(!qemuSystem.available)('blockemu system against qemu-system-x86_64: QMP', () => {
  /** `stderr: false` leaves stderr out of the comparison (QEMU's warnings blockemu does not print yet). */
  const compare = (args: string[], requests: string[], opts: { stderr?: boolean } = {}) =>
    withTempDir(async (dir) => {
      const [q, b] = await both((p) => qmpTranscript(p, dir, [...BASE, ...args], requests));
      if (opts.stderr === false) expect({ ...b, stderr: '' }).toEqual({ ...q, stderr: '' });
      else expect(b).toEqual(q);
      return b;
    });

  it('greets as qemu-system, reports prelaunch under -S and announces STOP/RESUME across stop/cont', async () => {
    const t = await compare(
      ['-M', 'pc', '-S'],
      [
        caps,
        '{"execute": "query-status"}',
        '{"execute": "stop"}',
        '{"execute": "query-status"}',
        '{"execute": "cont"}',
        '{"execute": "query-status"}',
        '{"execute": "cont"}',
        '{"execute": "stop"}',
        '{"execute": "stop"}',
        '{"execute": "query-status"}',
        '{"execute": "cont", "id": 7}',
        quit,
      ],
    );
    expect(t.lines[0]).toBe('{"QMP": {"version": VERSION, "capabilities": ["oob"]}}');
    expect(t.lines).toContain('{"return": {"status": "prelaunch", "singlestep": false, "running": false}}');
    expect(t.lines).toContain('{"event": "RESUME"}');
  });

  it('takes a bare image name as -hda, and -hdb/-cdrom/-fda as the drives they stand for; guest-only -m, -name, -no-shutdown are accepted; -loadvm reverts the disks at start', async () => {
    await withTempDir(async (dir) => {
      const img = (n: string) => join(dir, n);
      for (const n of ['a.qcow2', 'b.qcow2', 'c.qcow2']) expect((await qemuImg('create', '-q', '-f', 'qcow2', img(n), '1M')).code).toBe(0);
      // A snapshot with a VM state, as QEMU's -loadvm wants (it refuses disk-only ones; blockemu would take either).
      const saved = await hmpTranscript('qemu', [...BASE, '-monitor', 'stdio', '-drive', `if=none,file=${img('a.qcow2')}`, '-drive', `if=none,file=${img('b.qcow2')}`], 'savevm s0\nquit\n');
      expect(saved.code).toBe(0);
      // Written after the snapshot: -loadvm takes it back before any command runs.
      expect((await run('qemu-io', ['-c', 'write -P 7 0 64k', img('a.qcow2')])).code).toBe(0);
      const generated = (l: string) => l.replaceAll(dir, 'DIR').replace(/#block\d+/g, '#blockN');
      const blocks = (t: { lines: string[] }) => t.lines.filter((l) => l.startsWith('{"return": [')).map(generated);
      const [q, b] = await both((p) =>
        qmpTranscript(p, dir, [...BASE, '-m', '128', '-name', 'vm0', '-no-shutdown', img('a.qcow2'), '-hdb', img('b.qcow2'), '-cdrom', img('c.qcow2'), '-loadvm', 's0'], [
          caps,
          '{"execute": "query-block"}',
          '{"execute": "human-monitor-command", "arguments": {"command-line": "qemu-io ide0-hd0 \\"read -P 0 0 64k\\""}}',
          quit,
        ]),
      );
      expect(blocks(b)).toEqual(blocks(q));
      expect(blocks(b)[0]).toContain('"device": "ide0-hd0"');
      expect(b.lines.map(generated)).toEqual(q.lines.map(generated));
      // The failing case: the monitors greet, then the process ends with the error.
      expect((await qemuImg('snapshot', '-d', 's0', img('b.qcow2'))).code).toBe(0);
      const [qf, bf] = await both((p) => qmpTranscript(p, dir, [...BASE, img('a.qcow2'), '-hdb', img('b.qcow2'), '-loadvm', 's0'], [caps, quit]));
      expect({ ...bf, stderr: bf.stderr.replaceAll('blockemu system', 'qemu-system-x86_64') }).toEqual(qf);
      // A missing file is named as it was written.
      for (const args of [[img('none.qcow2')], ['-hdb', img('none.qcow2')]]) {
        const [qe, be] = await both((p) => runSystem(p, [...BASE, ...args]));
        expect({ code: be.code, stderr: be.stderr.replaceAll('blockemu system', 'qemu-system-x86_64') }).toEqual({ code: qe.code, stderr: qe.stderr });
      }
    });
  });

  it('answers system_reset and system_powerdown with their events, and quit with SHUTDOWN before its reply', async () => {
    const t = await compare(['-M', 'none'], [caps, '{"execute": "system_reset"}', '{"execute": "system_powerdown"}', '{"execute": "query-status"}', quit]);
    expect(t.lines.slice(-2)).toEqual(['{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}', '{"return": {}}']);
    expect(t.code).toBe(0);
  });

  it('drains jobs on stop, and on quit sends SHUTDOWN, cancels the jobs and only then replies', async () => {
    const t = await compare(
      ['-M', 'none', '-blockdev', 'null-co,node-name=src,size=67108864', '-blockdev', 'null-co,node-name=tgt,size=67108864'],
      [
        caps,
        // Rate-limited: the job is still running, waiting after its first chunk, when quit comes.
        '{"execute": "blockdev-backup", "arguments": {"job-id": "j0", "device": "src", "target": "tgt", "sync": "full", "speed": 65536}}',
        '{"execute": "stop"}',
        '{"execute": "query-status"}',
        quit,
      ],
      // QEMU warns that the null-co target gives no cluster size; blockemu's backup does not warn.
      { stderr: false },
    );
    expect(t.lines.at(-1)).toBe('{"return": {}}');
    expect(t.lines.some((l) => l.includes('BLOCK_JOB_CANCELLED'))).toBe(true);
  });

  it("answers HMP qemu-io with an empty reply (qemu-io's output goes to stdout), under common.qemu's -nographic -serial none -monitor none", async () => {
    const t = await compare(
      ['-M', 'none', '-nographic', '-serial', 'none', '-monitor', 'none', '-blockdev', 'null-co,node-name=n0,size=1048576'],
      [caps, '{"execute": "human-monitor-command", "arguments": {"command-line": "qemu-io n0 \\"read 0 512\\""}}', '{"execute": "human-monitor-command", "arguments": {"command-line": "qemu-io nosuch \\"read 0 512\\""}}', quit],
    );
    expect(t.lines[2]).toBe('{"return": ""}');
    expect(t.lines[3]).toBe(`{"return": "Error: Cannot find device='' nor node-name='nosuch'\\r\\n"}`);
  });

  it('takes -blockdev and -object before the monitor, and refuses bad arguments to the VM-level commands as QEMU', async () => {
    await compare(
      ['-M', 'pc', '-S', '-object', 'iothread,id=io0', '-blockdev', 'null-co,node-name=n0,size=1048576', '-device', 'virtio-blk,drive=n0,id=vd0'],
      [caps, '{"execute": "stop", "arguments": {"x": 1}}', '{"execute": "query-status", "arguments": {}}', '{"execute": "query-named-block-nodes", "arguments": {"flat": true}}', quit],
    );
  });
});

describe('blockemu system alone', () => {
  it('serves -qmp unix:…,server=on,wait=off and -qmp stdio', async () => {
    await withTempDir(async (dir) => {
      const child = spawnSystem('blockemu', ['-M', 'none', '-S', '-qmp', 'stdio']);
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stdin!.write(`${caps}\n{"execute": "query-status"}\n${quit}\n`);
      const code = await new Promise((r) => child.once('exit', r));
      const lines = out.trim().split(/\r?\n/).map((l) => l.replace(/\{"timestamp": \{[^}]*\}, /, '{'));
      expect(code).toBe(0);
      expect(lines.slice(1)).toEqual([
        '{"return": {}}',
        '{"return": {"status": "prelaunch", "singlestep": false, "running": false}}',
        '{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}',
        '{"return": {}}',
      ]);
      void dir;
    });
  });
});

describe.skipIf(!qemu.storageDaemon)('the storage daemon has no machine', () => {
  it('answers query-status and stop with CommandNotFound, as qemu-storage-daemon', async () => {
    await withTempDir(async (dir) => {
      const out: string[][] = [];
      for (const which of ['qsd', 'blockemu'] as const) {
        const s = await RawQmp.start(which, dir);
        try {
          out.push([await s.command('{"execute": "query-status"}'), await s.command('{"execute": "stop"}')]);
        } finally {
          await s.quit();
        }
      }
      expect(out[1]).toEqual(out[0]);
      expect(out[1]![0]).toBe('{"error": {"class": "CommandNotFound", "desc": "The command query-status has not been found"}}');
    });
  });
});

describe('blockemu system: -qtest', () => {
  it('connects to the harness and answers its commands, clock_step moving the qtest clock', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'qtest.sock');
      const server = createServer();
      await new Promise<void>((r) => server.listen(path, r));
      const child = spawnSystem('blockemu', ['-M', 'none', '-qtest', `unix:path=${path}`, '-accel', 'qtest']);
      try {
        const sock = await new Promise<Socket>((r) => server.once('connection', r));
        let got = '';
        sock.setEncoding('utf8').on('data', (d: string) => (got += d));
        sock.write('clock_step 100\nclock_step\nclock_set 50\nclock_set 1000\noutb 0x80 0x1\n');
        while (got.split('\n').length < 6) await new Promise((r) => sock.once('data', r));
        expect(got).toBe('OK 100\nOK 100\nOK 100\nOK 1000\nOK\n');
        sock.destroy();
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
        server.close();
      }
    });
  });
});

describe('blockemu-system-x86_64, the one-executable form', () => {
  it('runs as blockemu system and prints its own name before messages', async () => {
    const { run } = await import('../helpers/qemu.js');
    const exe = join(import.meta.dirname, '..', '..', 'dist', 'bin', 'blockemu-system-x86_64.js');
    const bad = await run(process.execPath, [exe, '-M', 'none', '-foo']);
    expect(bad).toEqual({ code: 1, stdout: '', stderr: 'blockemu-system-x86_64: -foo: invalid option\n' });
    const help = await run(process.execPath, [exe, '-machine', 'help']);
    expect(help.stdout).toBe((await runSystem('blockemu', ['-machine', 'help'])).stdout);
  });
});
