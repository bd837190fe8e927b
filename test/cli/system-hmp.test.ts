import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';
import { BASE, hmpTranscript, qemuSystem, qmpTranscript, type SystemProg } from '../helpers/system.js';

/**
 * The human monitor of `blockemu system` against qemu-system-x86_64 7.2's,
 * fed through a pipe as the iotests do: the greeting, the prompt, the
 * readline echo (ESC[D/ESC[K redraws, CR LF) and each command's output,
 * compared byte for byte. Only generated node names (#blockNNN) and what a
 * guest makes differ (a snapshot's VM state size, date and clock) are
 * normalised.
 */
const both = async <T>(f: (p: SystemProg) => Promise<T>): Promise<[T, T]> => [await f('qemu'), await f('blockemu')];
const generated = (s: string) => s.replace(/#block\d+/g, '#blockN');
/** One snapshot row's fields a guest decides: VM size, date, VM clock. */
const snapshotRows = (s: string) => s.replace(/^(\S+ +\S+) +\S+ \S+ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\d\d:\d\d:\d\d\.\d{3}/gm, '$1 SIZE DATE CLOCK');
/** Only what the commands printed: the echo's redraws taken out. */
const plain = (s: string) => s.replace(/\x1b\[[DK]/g, '');

if (!qemuSystem.available || !qemu.available) {
  if (process.env['CI'] === 'true') throw new Error('qemu-system-x86_64 and qemu-img are needed in CI');
  console.warn('skipping system-hmp tests: qemu-system-x86_64 or qemu-img is not installed');
}

describe.skipIf(!qemuSystem.available || !qemu.available)('blockemu system -monitor stdio against qemu-system-x86_64', () => {
  const compare = async (args: string[], input: string, norm: (s: string) => string = generated) => {
    const [q, b] = await both((p) => hmpTranscript(p, [...BASE, ...args], input));
    expect({ code: b.code, stderr: b.stderr, stdout: norm(b.stdout) }).toEqual({ code: q.code, stderr: q.stderr, stdout: norm(q.stdout) });
    return b;
  };

  it('greets, prompts, echoes as readline redraws, and answers empty lines, unknown commands and argument errors as QEMU', async () => {
    const b = await compare(['-monitor', 'stdio'], 'info block\ninfo status\n\nxyz\ninfo foo\ninfo block -x\ninfo block a b\nblock_resize\nblock_resize d 12x\nquit\n');
    expect(b.stdout.startsWith("QEMU 7.2.N monitor - type 'help' for more information\r\n(qemu) i\x1b[K\x1b[Din\x1b[K")).toBe(true);
    expect(plain(b.stdout)).toContain("unknown command: 'info foo'\r\n");
    expect(plain(b.stdout)).toContain('block: unsupported option -x\r\nTry "help info block" for more information\r\n');
  });

  it('edits the line with DEL and backspace as readline redraws it', async () => {
    await compare(['-monitor', 'stdio'], 'info statuz\x7fs\ninfo\x08\x08\x08\x08quit\n');
  });

  it('takes -mon chardev=X with readline as the default mode, and a CR as Enter', async () => {
    await compare(['-chardev', 'stdio,id=h', '-mon', 'chardev=h'], 'info status\r\nstop\ninfo status\r\ncont\ninfo status\nquit\n');
  });

  it('prints info block, -n, a device or node argument, blockstats and block-jobs as QEMU for drives, devices and nodes', async () => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-f', 'qcow2', join(dir, 'b.qcow2'), '1M');
      await qemuImg('create', '-f', 'qcow2', '-b', join(dir, 'b.qcow2'), '-F', 'qcow2', join(dir, 't.qcow2'), '4M');
      const b = await compare(
        [
          '-monitor', 'stdio', '-drive', 'if=none,id=d0,driver=null-co,read-zeroes=on', '-drive', `if=none,id=d1,file=${join(dir, 't.qcow2')},detect-zeroes=on`,
          '-device', 'virtio-blk-pci,drive=d1,id=vd', '-blockdev', 'null-co,node-name=n1', '-device', 'ide-cd,id=cd', '-drive', 'if=virtio,driver=null-co,readonly=on',
        ],
        'info block\ninfo block -n\ninfo block n1\ninfo block d1\ninfo block nope\ninfo blockstats\ninfo block-jobs\nquit\n',
      );
      expect(plain(b.stdout)).toContain(`    Backing file:     ${join(dir, 'b.qcow2')} (chain depth: 1)\r\n`);
    });
  });

  it('applies -set to the -drive with that id, as its own option would be', async () => {
    const b = await compare(['-monitor', 'stdio', '-drive', 'if=none,id=d0,driver=null-co', '-set', 'drive.d0.read-only=on'], 'info block\nquit\n');
    expect(plain(b.stdout)).toContain('null-co:// (null-co, read-only)');
  });

  it('saves, lists, loads and deletes VM snapshots on the writable qcow2 drives, refusing drives that cannot take one', async () => {
    await withTempDir(async (dir) => {
      for (const p of ['qemu', 'blockemu']) {
        await qemuImg('create', '-f', 'qcow2', join(dir, `${p}-a.qcow2`), '1M');
        await qemuImg('create', '-f', 'qcow2', join(dir, `${p}-b.qcow2`), '1M');
      }
      const input = 'info snapshots\nsavevm s1\nsavevm\ninfo snapshots\nsavevm s1\nloadvm s1\nloadvm nope\ndelvm s1\ninfo snapshots\nquit\n';
      const [q, b] = await both((p) =>
        hmpTranscript(p, [...BASE, '-S', '-monitor', 'stdio', '-drive', `if=none,id=a,file=${join(dir, `${p}-a.qcow2`)}`, '-blockdev', `driver=file,filename=${join(dir, `${p}-b.qcow2`)},node-name=bf`, '-blockdev', 'qcow2,file=bf,node-name=b'], input),
      );
      // savevm without a name makes vm-DATE; QEMU's VM state size differs from blockemu's empty one.
      const norm = (s: string) => snapshotRows(s.replace(/vm-\d{14}/g, 'vm-DATE'));
      expect({ code: b.code, stderr: b.stderr, stdout: norm(b.stdout) }).toEqual({ code: q.code, stderr: q.stderr, stdout: norm(q.stdout) });
      expect(plain(b.stdout)).toMatch(/^--        vm-\d{14} +0 B /m);
      for (const f of ['blockemu-a.qcow2', 'blockemu-b.qcow2']) {
        const check = await qemuImg('check', join(dir, f));
        expect(check.code, check.stdout + check.stderr).toBe(0);
        expect((await qemuImg('snapshot', '-l', join(dir, f))).stdout).toMatch(/^\d+ +vm-\d{14} +0 B /m);
      }
      await compare(['-monitor', 'stdio', '-drive', 'if=none,id=r,driver=null-co'], 'savevm x\ninfo snapshots\nloadvm x\nquit\n');
    });
  });

  it('runs the same commands through QMP human-monitor-command, output in the reply', async () => {
    await withTempDir(async (dir) => {
      const requests = [
        '{"execute": "qmp_capabilities"}',
        '{"execute": "human-monitor-command", "arguments": {"command-line": "info block"}}',
        '{"execute": "human-monitor-command", "arguments": {"command-line": "drive_add 0 if=none,id=d9,driver=null-co"}}',
        '{"execute": "human-monitor-command", "arguments": {"command-line": "info block d9"}}',
        '{"execute": "human-monitor-command", "arguments": {"command-line": "drive_del d9"}}',
        '{"execute": "human-monitor-command", "arguments": {"command-line": "drive_del d9"}}',
        '{"execute": "human-monitor-command", "arguments": {"command-line": "nosuch"}}',
        '{"execute": "quit"}',
      ];
      const [q, b] = await both((p) => qmpTranscript(p, dir, [...BASE, '-S', '-drive', 'if=none,id=d0,driver=null-co'], requests));
      const norm = (t: typeof q) => ({ code: t.code, stderr: t.stderr, lines: t.lines.map(generated) });
      expect(norm(b)).toEqual(norm(q));
      expect(b.lines).toContain('{"return": "OK\\r\\n"}');
    });
  });
});
