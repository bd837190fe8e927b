/**
 * QEMU 7.2's VM and storage-daemon iotests that pass with blockemu
 * (iotests/expected-system.txt: blockemu-system-x86_64 as QEMU_PROG,
 * `blockemu daemon` as QSD_PROG, QEMU's own qemu-img/qemu-io/qemu-nbd) keep
 * passing: one run of `npm run iotests -- --suite=system` over that list,
 * with qemu-system-x86_64 and qemu-storage-daemon as the baseline, and one
 * test here per entry. Needs the QEMU source (QEMU_SRC, or `npm run iotests
 * -- --fetch-only`) and qemu-system-x86_64.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { findQemuSource } from '../../iotests/source.js';
import { qemu } from '../helpers/qemu.js';
import { qemuSystem } from '../helpers/system.js';

const root = join(import.meta.dirname, '..', '..');
const entries = readFileSync(join(root, 'iotests', 'expected-system.txt'), 'utf8')
  .split('\n')
  .map((l) => l.replace(/#.*/, '').trim().split(/\s+/))
  .filter((w) => w.length >= 2 && w[2] !== 'slow')
  .map((w) => `${w[0]} ${w[1]}`);
const src = await findQemuSource(false);
const missing =
  'missing' in src ? src.missing : !qemu.available || !qemu.storageDaemon ? "QEMU's tools or qemu-storage-daemon are not installed" : !qemuSystem.available ? 'qemu-system-x86_64 is not installed' : undefined;
if (missing && process.env.CI !== 'true') console.warn(`SKIP iotests (system): ${missing}`);

describe.skipIf(missing !== undefined && process.env.CI !== 'true')('QEMU 7.2 iotests with blockemu-system-x86_64 and blockemu daemon', () => {
  let output = '';
  beforeAll(async () => {
    if (missing) throw new Error(`iotests cannot run: ${missing}`);
    const r = await promisify(execFile)(process.execPath, [join(root, 'dist', 'iotests', 'run.js'), '--suite=system', '--expect=iotests/expected-system.txt', '--skip-slow', '--jobs=2'], {
      cwd: root,
      maxBuffer: 16 << 20,
    }).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '' }));
    output = r.stdout + r.stderr;
  }, 900_000);

  for (const entry of entries) {
    it(entry, () => {
      const [fmt, test] = entry.split(/\s+/);
      const line = output.split('\n').find((l) => l.startsWith(`${fmt} ${test} `));
      expect(line, output).toBeDefined();
      expect(line).toMatch(/qemu: pass /); // the baseline: qemu-system-x86_64 and qemu-storage-daemon
      expect(line).toMatch(/blockemu: pass/);
    });
  }
});
