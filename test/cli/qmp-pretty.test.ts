/**
 * QMP's bytes on the wire, compact and pretty (-qmp-pretty, -mon …,pretty=on),
 * from blockemu system and qemu-system-x86_64 7.2 on the same requests:
 * identical once timestamps and the version's micro and package are masked;
 * and the storage daemon's `--monitor …,pretty=on` against qemu-storage-daemon.
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { toQmpJson } from '../../src/qmp/json-out.js';
import { BLOCKEMU, qemu, withTempDir } from '../helpers/qemu.js';
import { connectToQsd } from '../helpers/qsd.js';
import { BASE, normaliseBytes, qemuSystem, type SystemProg, stdioTranscript } from '../helpers/system.js';

const requests = [
  '{"execute": "qmp_capabilities"}',
  '{"execute": "query-status"}',
  '{"execute": "stop"}',
  '{"execute": "query-block-jobs"}',
  '{"execute": "no-such-command", "id": {"a": [1, {}]}}',
  // An error whose text needs escapes (a non-ASCII key, quotes).
  '{"execute": "query-status", "arguments": {"\u00e9t\u00e9": 1}}',
  '{"execute": "query-named-block-nodes", "arguments": {"flat": true}}',
  '{"execute": "cont"}',
  '{"execute": "quit"}',
];
const machine = [...BASE, '-M', 'none', '-S', '-blockdev', 'null-co,node-name=n0,size=1048576'];

const both = async (args: string[]) => {
  const out: Record<SystemProg, { out: string; code: number | null }> = {} as never;
  for (const p of ['qemu', 'blockemu'] as const) out[p] = await stdioTranscript(p, [...machine, ...args], requests);
  return out;
};

describe.skipIf(!qemuSystem.available)('QMP bytes: blockemu system against qemu-system-x86_64', () => {
  it('-qmp-pretty stdio: the same pretty bytes (CR LF on every line, empty objects and arrays on two lines)', async () => {
    const { qemu, blockemu } = await both(['-qmp-pretty', 'stdio']);
    expect(blockemu).toEqual(qemu);
    expect(blockemu.out.startsWith('{\r\n    "QMP": {\r\n        "version": {\r\n')).toBe(true);
    expect(blockemu.out).toContain('{\r\n    "return": {\r\n    }\r\n}\r\n');
    expect(blockemu.out).toContain('{\r\n    "return": [\r\n    ]\r\n}\r\n');
    expect(blockemu.out).toContain('\\u00E9t\\u00E9');
  });

  it('-mon chardev=…,mode=control,pretty=on: the same pretty bytes', async () => {
    const { qemu, blockemu } = await both(['-chardev', 'stdio,id=m', '-mon', 'chardev=m,mode=control,pretty=on']);
    expect(blockemu).toEqual(qemu);
    expect(blockemu.out).toContain('    "event": "SHUTDOWN",\r\n    "data": {\r\n        "guest": false,\r\n');
  });

  it('-qmp stdio: the compact form, one message a line, ": " and ", " as separators', async () => {
    const { qemu, blockemu } = await both(['-qmp', 'stdio']);
    expect(blockemu).toEqual(qemu);
    expect(blockemu.out.split('\r\n')[1]).toBe('{"return": {}}');
  });
});

/** Every byte a storage daemon's pretty monitor writes for `requests` sent at once, up to quit's end of the connection. */
async function daemonPretty(which: 'qsd' | 'blockemu', dir: string, reqs: readonly string[]): Promise<string> {
  const path = join(dir, `${which}.sock`);
  const args = ['--blockdev', 'null-co,node-name=n0,size=1048576', '--chardev', `socket,id=m,path=${path},server=on,wait=off`, '--monitor', 'chardev=m,pretty=on'];
  const proc = which === 'qsd' ? spawn('qemu-storage-daemon', args, { stdio: 'ignore' }) : spawn(process.execPath, [BLOCKEMU, 'daemon', ...args], { stdio: 'ignore' });
  const exited = new Promise((r) => proc.once('exit', r));
  const sock = await connectToQsd(path);
  let out = '';
  sock.setEncoding('latin1').on('data', (d: string) => (out += d));
  sock.on('error', () => undefined); // QEMU may reset the connection as it exits
  sock.write(reqs.map((r) => `${r}\n`).join(''));
  await new Promise((r) => sock.once('close', r));
  await exited;
  return normaliseBytes(out);
}

describe.skipIf(!qemu.storageDaemon)('QMP bytes: blockemu daemon against qemu-storage-daemon', () => {
  it('--monitor chardev=…,pretty=on: the same pretty bytes', async () => {
    const reqs = requests.filter((r) => !/query-status|stop|cont/.test(r));
    await withTempDir(async (dir) => {
      const [q, b] = [await daemonPretty('qsd', dir, reqs), await daemonPretty('blockemu', dir, reqs)];
      expect(b).toBe(q);
      expect(b).toContain('"node-name": "n0",\r\n');
    });
  });
});

describe("toQmpJson's pretty form", () => {
  it('indents four spaces a level, puts closing brackets on their own lines and writes no space before a newline', () => {
    // Members in QDict order, as in the compact form ("d" first here).
    expect(toQmpJson({ a: [], b: {}, c: [1, [2, {}]], d: 'x' }, true)).toBe(
      '{\n    "d": "x",\n    "a": [\n    ],\n    "b": {\n    },\n    "c": [\n        1,\n        [\n            2,\n            {\n            }\n        ]\n    ]\n}',
    );
    expect(toQmpJson([], true)).toBe('[\n]');
    expect(toQmpJson(5, true)).toBe('5');
    expect(toQmpJson({ a: [1, {}] })).toBe('{"a": [1, {}]}');
  });
});
