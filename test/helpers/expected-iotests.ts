/**
 * One vitest test per entry of an iotests expectation list (iotests/*.txt):
 * one `npm run iotests` run over the list (slow entries left out), then
 * each entry must pass with blockemu. The baseline runs only what blockemu
 * failed (--baseline=on-failure), so such a failure says whether the
 * environment fails the test too. Skipped with a message when `missing`
 * says what is absent, failed instead under CI=true.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { fuseUnavailable } from '../../iotests/fuse.js';

const root = join(import.meta.dirname, '..', '..');

export function describeExpectedIotests(o: { title: string; list: string; args: string[]; missing: string | undefined; baseline: string; timeoutMs: number }): void {
  // Tests marked slow (minutes each) are left to `npm run iotests`; those marked fuse need FUSE mounts (run.ts leaves them out where none can be made).
  const noFuse = fuseUnavailable();
  const lines = readFileSync(join(root, 'iotests', o.list), 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim().split(/\s+/))
    .filter((w) => w.length >= 2 && w[2] !== 'slow');
  for (const w of lines) if (w[2] === 'fuse' && noFuse) console.warn(`SKIP iotest ${w[0]} ${w[1]}: ${noFuse}`);
  const entries = lines.filter((w) => !(w[2] === 'fuse' && noFuse)).map((w) => `${w[0]} ${w[1]}`);
  if (o.missing && process.env.CI !== 'true') console.warn(`SKIP ${o.title}: ${o.missing}`);

  describe.skipIf(o.missing !== undefined && process.env.CI !== 'true')(o.title, () => {
    let output = '';
    beforeAll(async () => {
      if (o.missing) throw new Error(`iotests cannot run: ${o.missing}`);
      const args = [join(root, 'dist', 'iotests', 'run.js'), ...o.args, `--expect=iotests/${o.list}`, '--skip-slow', '--jobs=2', '--baseline=on-failure'];
      const r = await promisify(execFile)(process.execPath, args, { cwd: root, maxBuffer: 16 << 20 }).catch((e: { stdout?: string; stderr?: string }) => ({
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      }));
      output = r.stdout + r.stderr;
    }, o.timeoutMs);

    for (const entry of entries) {
      it(entry, () => {
        const [fmt, test] = entry.split(/\s+/);
        const line = output.split('\n').find((l) => l.startsWith(`${fmt} ${test} `));
        expect(line, output).toBeDefined();
        // A failure names what the baseline made of the same test: a regression if it passed there.
        const base = /qemu: (pass|fail|not run)/.exec(line!)?.[1];
        const why = base === 'pass' ? `passes in ${o.baseline}: a regression` : `${base ?? 'not run'} in ${o.baseline} too: the environment?`;
        expect(line, why).toMatch(/blockemu: pass/);
      });
    }
  });
}
