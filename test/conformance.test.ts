/**
 * The shared differential scenarios (test/conformance, recorded from
 * qemu-storage-daemon 7.2): each implemented scenario is played against
 * blockemu's daemon and must match its golden transcript.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BLOCKEMU, qemu, run } from './helpers/qemu.js';

const RUNNER = join(import.meta.dirname, 'conformance', 'run.py');
const python = spawnSync('python3', ['--version']).status === 0;
if (!python && process.env.CI === 'true') throw new Error('python3 is missing: the conformance runner needs it (CI=true, so this is a failure)');
if (!python) console.warn('SKIP: python3 is missing; the conformance scenarios need it');

describe.skipIf(!qemu.available || !python)('conformance scenarios vs qemu-storage-daemon goldens', () => {
  it.each(['01-greeting-capabilities', '03-query-nodes', '04a-drive-backup-raw', '04b-drive-backup-qcow2', '07-backup-source-error-report', '08-backup-target-enospc-stop-resume', '10-job-verbs-af-ad', '11-job-verbs-af', '12-job-verbs-ad', '13-job-verbs-manual', '20-backup-source-eio-stop', '21-backup-source-eio-ignore', '22-backup-source-eio-enospc', '23-backup-source-enospc-enospc', '24-backup-source-eio-auto', '25-backup-target-eio-report', '26-backup-target-eio-ignore', '27-backup-target-eio-stop', '28-backup-target-eio-enospc', '29-backup-target-enospc-auto', '30-backup-target-eio-auto', '31-backup-stopped-on-error-verbs', '06-transaction-two-backups', '40-blockdev-create-qcow2', '50-nbd-fleecing-pull-backup'])('%s', async (name) => {
    const r = await run('python3', [RUNNER, '--daemon', `${process.execPath} ${BLOCKEMU} daemon`, '--only', name, '-v']);
    expect(r.stdout + r.stderr).toContain('conformance: 1/1 scenarios match');
    expect(r.code).toBe(0);
  }, 60_000);
});
