import { spawn } from 'node:child_process';
import { access, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/qmp/client.js';
import { BLOCKEMU, qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';

describe('blockemu demo (npm start)', () => {
  it('starts the daemon on the demo images, prints how to reach it, and quits cleanly', async () => {
    await withTempDir(async (dir) => {
      const proc = spawn(process.execPath, [BLOCKEMU, 'demo', '--dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exit = new Promise<number | null>((r) => proc.once('exit', r));
      let out = '';
      const sock = await new Promise<string>((resolve, reject) => {
        proc.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /QMP:\s+(\S+)/.exec(out);
          if (m && out.includes('Stop it with')) resolve(m[1]!);
        });
        proc.once('exit', () => reject(new Error(`demo exited early:\n${out}`)));
      });
      expect(sock).toBe(join(dir, 'qmp.sock'));
      // The printed example commands work as printed.
      const example = /(node \S+ qmp -s \S+ query-version)/.exec(out)![1]!.split(' ');
      const r = await run(example[0]!, example.slice(1));
      expect(r.code).toBe(0);
      if (qemu.available) {
        // The printed NBD example too: disk1's first MiB is data, the rest reads as zeroes.
        const uri = /qemu-img map --output=json '(\S+)'/.exec(out)![1]!;
        const map = JSON.parse((await qemuImg('map', '--output=json', uri)).stdout) as Array<{ start: number; length: number; data: boolean }>;
        expect(map[0]).toMatchObject({ start: 0, length: 1 << 20, data: true });
      }
      const c = await QmpClient.connect(sock);
      const io = await c.execute<string>('human-monitor-command', { 'command-line': 'qemu-io disk1 "read -P 0x5a 0 64k"' });
      expect(io).toMatch(/^read 65536\/65536 bytes at offset 0/);
      await c.execute('human-monitor-command', { 'command-line': 'qemu-io disk0 "write -P 0x11 0 4k"' });
      await c.execute('quit');
      expect(await exit).toBe(0);
      await expect(access(sock)).rejects.toThrow();
      if (qemu.available) expect((await qemuImg('check', join(dir, 'disk1.qcow2'))).code).toBe(0);
    });
  });

  it('without --dir, works in a fresh temporary directory and removes it after quit', async () => {
    await withTempDir(async (tmp) => {
      // TMPDIR points the demo's mkdtemp into a directory of the test's own.
      const proc = spawn(process.execPath, [BLOCKEMU, 'demo'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TMPDIR: tmp } });
      const exit = new Promise<number | null>((r) => proc.once('exit', r));
      let out = '';
      const sock = await new Promise<string>((resolve, reject) => {
        proc.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /QMP:\s+(\S+)/.exec(out);
          if (m && out.includes('Stop it with')) resolve(m[1]!);
        });
        proc.once('exit', () => reject(new Error(`demo exited early:\n${out}`)));
      });
      expect(dirname(dirname(sock))).toBe(tmp);
      const c = await QmpClient.connect(sock);
      await c.execute('quit');
      expect(await exit).toBe(0);
      expect(await readdir(tmp)).toEqual([]);
    });
  });
});
