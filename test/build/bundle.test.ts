/**
 * The executables run from dist/blockemu.bundle.cjs (build/bundle.ts);
 * BLOCKEMU_BUNDLE=off runs the ES modules the bundle was made from. The
 * two must not be told apart, and the code cache the build wrote must be
 * the one V8 takes (a rejected cache is a silent slow start).
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/qmp/client.js';
import { connectSoon } from '../helpers/connect-soon.js';
import { BLOCKEMU, run, withTempDir } from '../helpers/qemu.js';

const SYSTEM = join(BLOCKEMU, '..', 'blockemu-system-x86_64.js');
type Mode = 'bundle' | 'modules';
const env = (mode: Mode, extra: NodeJS.ProcessEnv = {}) => ({ ...process.env, BLOCKEMU_BUNDLE: mode === 'modules' ? 'off' : 'report', ...extra });
/** stderr without the bundle's own report line. */
const ownStderr = (s: string) => s.replace(/^blockemu bundle: code cache \w+\n/m, '');

describe('the executables from the bundle', () => {
  it('use the code cache the build wrote', async () => {
    const r = await run(process.execPath, [BLOCKEMU, '--version'], { env: env('bundle') });
    expect(r.stderr).toBe('blockemu bundle: code cache used\n');
    expect(r.stdout).toBe('0.1.0\n');
  });

  it.each([
    [BLOCKEMU, ['--help']],
    [BLOCKEMU, ['img', '--help']],
    [BLOCKEMU, ['io', '-c', 'help']],
    [BLOCKEMU, ['daemon', '--help']],
    [BLOCKEMU, ['daemon', '--blockdev', 'driver=nope']],
    [BLOCKEMU, ['img', 'info', '/nonexistent/x.qcow2']],
    [BLOCKEMU, ['img', 'create', '-f', 'qcow2', '/nonexistent/x.qcow2', '1G']],
    [SYSTEM, ['-machine', 'help']],
    [SYSTEM, ['-drive', 'format=help']],
    [SYSTEM, ['-bogus']],
  ])('%s %j: the same output and exit code as the ES modules', async (bin, args) => {
    const [a, b] = await Promise.all((['bundle', 'modules'] as const).map((m) => run(process.execPath, [bin, ...args], { env: env(m) })));
    expect({ ...a!, stderr: ownStderr(a!.stderr) }).toEqual(b);
  });

  it('a daemon session answers the same (greeting, schema, a node, an error, quit)', async () => {
    const session = (mode: Mode) =>
      withTempDir(async (dir) => {
        const sock = join(dir, 'm.sock');
        const img = join(dir, 'a.qcow2');
        expect((await run(process.execPath, [BLOCKEMU, 'img', 'create', '-f', 'qcow2', img, '64M'], { env: env(mode) })).code).toBe(0);
        const proc = spawn(process.execPath, [BLOCKEMU, 'daemon', '--blockdev', `driver=qcow2,node-name=disk,file.driver=file,file.filename=${img}`, '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m'], { env: env(mode), stdio: 'ignore' });
        const exited = new Promise<number | null>((r) => proc.once('exit', r));
        const c: QmpClient = await connectSoon(sock);
        try {
          const schema = await c.execute('query-qmp-schema');
          const nodes = ((await c.execute('query-named-block-nodes')) as Array<{ 'node-name': string; drv: string; image: { 'virtual-size': number } }>).map((n) => [n['node-name'], n.drv, n.image['virtual-size']]);
          const error = await c.execute('blockdev-del', { 'node-name': 'nope' }).then(
            () => 'no error',
            (e: unknown) => (e as Error).message,
          );
          await c.execute('quit');
          return { greeting: c.greeting, schema, nodes, error, code: await exited };
        } finally {
          c.close();
          proc.kill();
        }
      });
    const [a, b] = await Promise.all([session('bundle'), session('modules')]);
    expect(a.nodes).toEqual([['disk', 'qcow2', 64 << 20], [expect.stringMatching(/^#block\d+$/), 'file', expect.any(Number)]]);
    expect(a.error).toMatch(/nope/);
    // A miscompiled module once lost the greeting's version (a local `exports` hid the module's).
    expect(a.greeting).toEqual({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'blockemu 0.1.0' }, capabilities: ['oob'] } });
    expect(a).toEqual(b);
  });

  it('a tool call loads no package file and no crypto or zlib for a plain image (start-up cost)', () =>
    withTempDir(async (dir) => {
      // Preloaded into the tool: at exit it reports which files Node's require loaded and which built-ins were compiled.
      const hook = join(dir, 'report.cjs');
      await writeFile(hook, "process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify({ files: Object.keys(require.cache).filter((f) => f !== __filename), builtins: process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)) }) + '\\n'));\n");
      const img = join(dir, 'a.qcow2');
      expect((await run(process.execPath, [BLOCKEMU, 'img', 'create', '-q', '-f', 'qcow2', img, '64M'])).code).toBe(0);
      for (const args of [['io', '-c', 'write -P 1 0 4k', img], ['img', 'info', img]]) {
        const r = await run(process.execPath, ['--require', hook, BLOCKEMU, ...args], { env: env('bundle') });
        expect(r.code, r.stderr).toBe(0);
        const report = JSON.parse(/^LOADED (.*)$/m.exec(r.stderr)![1]!) as { files: string[]; builtins: string[] };
        expect(report.files, 'commander comes from the bundle, with its code cache').toEqual([]);
        expect(report.builtins).toContain('child_process'); // the report sees what was loaded
        expect(report.builtins.filter((m) => /^(crypto|zlib)$/.test(m))).toEqual([]);
      }
    }));
});
