/**
 * The Python suites (the pytest plugin's own tests and examples/pytest, the
 * sample backup-tool suite) run here so `npm test` has one total: against
 * blockemu and, when it is installed, qemu-storage-daemon, with the same
 * results. Without pytest they are skipped with a message, except under
 * CI=true, where that is a failure.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemu, run } from '../helpers/qemu.js';

const ROOT = join(import.meta.dirname, '..', '..');

const pytest = (() => {
  const ok = spawnSync('python3', ['-c', 'import pytest'], { stdio: 'ignore' }).status === 0;
  if (!ok) {
    const msg = 'python3 with pytest is missing: install python3-pytest to run the pytest plugin and examples/pytest';
    if (process.env.CI === 'true') throw new Error(`${msg} — CI=true, so this is a failure, not a skip`);
    console.warn(`SKIP: ${msg}`);
  }
  return ok;
})();

describe.skipIf(!pytest || !qemu.available)('pytest suites (python/tests, examples/pytest)', () => {
  it('pass against every daemon at hand', { timeout: 120_000 }, async () => {
    const daemons = qemu.storageDaemon ? 'blockemu,qsd' : 'blockemu';
    const r = await run('python3', ['-m', 'pytest', 'python/tests', 'examples/pytest', '-q', '-p', 'no:cacheprovider', `--qmp-daemon=${daemons}`], {
      cwd: ROOT,
      env: { ...process.env, BLOCKEMU: join(ROOT, 'dist', 'bin', 'blockemu.js'), PYTHONDONTWRITEBYTECODE: '1' },
    });
    expect(r.stdout + r.stderr).toMatch(/\d+ passed/);
    expect(r.stdout).not.toMatch(/\d+ (failed|error)/);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });
});
