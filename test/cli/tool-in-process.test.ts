/**
 * The interop tests run `blockemu img`/`io` lines inside the test worker
 * (test/helpers/tool-in-process.ts). That is only worth anything if a line
 * run so answers as the executable does: the same stdout, stderr, exit code
 * and files, for successes, failures, parse errors, help and version.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BLOCKEMU, run, withTempDir } from '../helpers/qemu.js';
import { runsInProcess, runToolInProcess } from '../helpers/tool-in-process.js';

const LINES: string[][] = [
  ['img', 'create', '-f', 'qcow2', 'a.qcow2', '1M'],
  ['img', 'info', 'a.qcow2'],
  ['img', 'info', '--output=json', 'a.qcow2'],
  ['img', 'info', 'missing.qcow2'],
  ['img', 'info', '--bogus', 'a.qcow2'],
  ['img', 'info', '-f'],
  ['img', 'check', '-r', 'everything', 'a.qcow2'],
  ['img', 'resize', 'a.qcow2', '+1M'],
  ['img', 'compare', 'a.qcow2', 'missing'],
  ['img', 'snapshot', '-c', 's1', 'a.qcow2'],
  ['img', 'snapshot', '-l', 'a.qcow2'],
  ['io', '-c', 'write -P 5 0 64k', 'a.qcow2'],
  ['io', '-c', 'read -P 6 0 4k', 'a.qcow2'],
  ['io', '-f', 'qcow2', '-c', 'map', '--', 'a.qcow2'],
  ['io', '-V'],
  ['io', '--nope'],
  ['io', '-c', 'open -o driver=raw', '-c', 'info'],
];

/** Timing and snapshot dates differ run to run. */
const steady = (s: string) =>
  s
    .replace(/\d\d\.\d\d sec \([^)]*\)/g, '<time>')
    .replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/g, '<date>')
    .replace(/\d\d:\d\d:\d\d\.\d{3}/g, '<clock>');

describe('blockemu img/io lines run in-process', () => {
  it('are the ones the executable would run (io sigraise and abort stay spawned)', () => {
    expect(runsInProcess('img', ['info', 'x'])).toBe(process.env.BLOCKEMU_TEST_SPAWN !== '1');
    expect(runsInProcess('io', ['-c', 'sigraise 9', 'x'])).toBe(false);
    expect(runsInProcess('io', ['-c', 'abort', 'x'])).toBe(false);
    expect(runsInProcess('daemon', [])).toBe(false);
  });

  it('answer as the executable does, line after line on the same files', async () => {
    await withTempDir(async (dir) => {
      await Promise.all(['p', 'i'].map((d) => mkdir(join(dir, d))));
      for (const line of LINES) {
        const spawned = await run(process.execPath, [BLOCKEMU, ...line], { cwd: join(dir, 'p') });
        const inProcess = await runToolInProcess(line, { cwd: join(dir, 'i') });
        const view = (r: typeof spawned) => ({ line, stdout: steady(r.stdout), stderr: steady(r.stderr), code: r.code });
        expect(view(inProcess)).toEqual(view(spawned));
      }
      const [p, i] = await Promise.all(['p', 'i'].map((d) => readFile(join(dir, d, 'a.qcow2'))));
      // The snapshot's date and clock differ; the rest of the image must not.
      expect(i!.length).toBe(p!.length);
      expect(i!.subarray(0, 0x30000)).toEqual(p!.subarray(0, 0x30000));
    });
  });
});
