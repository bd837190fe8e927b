/**
 * QEMU 7.2's own iotests that pass with blockemu's tools (iotests/expected.txt)
 * keep passing: one run of `npm run iotests` over that list, with QEMU's
 * tools as the baseline, and one test here per entry. Needs the QEMU source
 * (QEMU_SRC, or `npm run iotests -- --fetch-only`, which .ci/run does).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { findQemuSource } from '../../iotests/source.js';
import { qemu } from '../helpers/qemu.js';

const root = join(import.meta.dirname, '..', '..');
// Tests marked slow (minutes each with blockemu's tools) are left to `npm run iotests`.
const entries = readFileSync(join(root, 'iotests', 'expected.txt'), 'utf8')
  .split('\n')
  .map((l) => l.replace(/#.*/, '').trim().split(/\s+/))
  .filter((w) => w.length >= 2 && w[2] !== 'slow')
  .map((w) => `${w[0]} ${w[1]}`);
const src = await findQemuSource(false);
const missing = 'missing' in src ? src.missing : !qemu.available ? "QEMU's tools are not installed" : undefined;
if (missing && process.env.CI !== 'true') console.warn(`SKIP iotests: ${missing}`);

describe.skipIf(missing !== undefined && process.env.CI !== 'true')('QEMU 7.2 iotests with blockemu img and io', () => {
  let output = '';
  beforeAll(async () => {
    if (missing) throw new Error(`iotests cannot run: ${missing}`);
    const r = await promisify(execFile)(process.execPath, [join(root, 'dist', 'iotests', 'run.js'), '--expect=iotests/expected.txt', '--skip-slow', '--jobs=2'], { cwd: root, maxBuffer: 16 << 20 }).catch(
      (e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
    );
    output = r.stdout + r.stderr;
  }, 1_800_000);

  for (const entry of entries) {
    it(entry, () => {
      const [fmt, test] = entry.split(/\s+/);
      const line = output.split('\n').find((l) => l.startsWith(`${fmt} ${test} `));
      expect(line, output).toBeDefined();
      expect(line).toMatch(/qemu: pass /); // the environment runs it with QEMU's own tools
      expect(line).toMatch(/blockemu: pass/);
    });
  }
});
