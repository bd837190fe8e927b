/**
 * A killed blockemu's lock helper dies a moment after it (the kernel's
 * PR_SET_PDEATHSIG), and until then its description holds the dead
 * process's locks. A blockemu that meets such a lock waits for the helper
 * to die, as QEMU (which holds its locks in-process) never leaves one
 * behind. The helper here is a perl process that looks like ours (the
 * script's marker line, its parent's pid last) and holds the byte a
 * writer that shares no writing holds (201).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageLock, ImageLockError, ofdLocksAvailable } from '../../src/image/file-lock.js';
import { HELPER_MARKER } from '../../src/image/lock-helper.js';

const ofd = await ofdLocksAvailable();
if (!ofd) console.warn('SKIP: this machine cannot take OFD locks through perl (see resolveLocking)');

/** Read-locks byte 201 of ARGV[0] (F_OFD_SETLK), says so, and lives ARGV[2] seconds more; ARGV[1] is where our helper names its blockemu. */
const HOLDER = `
${HELPER_MARKER}
open(my $h, '<', $ARGV[0]) or die;
my $fl = pack('s s x4 q q i x4', 0, 0, 201, 1, 0);
fcntl($h, 37, $fl) or die "lock: $!";
$| = 1;
print "locked\\n";
select(undef, undef, undef, $ARGV[2]);
`;

/** A helper-like holder; `parent` is the pid it names as its blockemu (ours: it is not orphaned). */
async function holder(path: string, seconds: number, parent: number): Promise<ChildProcess> {
  const p = spawn('perl', ['-e', HOLDER, path, String(parent), String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(p.stdout!, 'data')) as [Buffer];
  expect(line.toString()).toBe('locked\n');
  return p;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'orphan-lock-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!ofd)('locks of a killed blockemu’s dying helper', () => {
  const W = 2;
  it('are waited for: a writer gets its lock once the helper is gone', async () => {
    const path = join(dir, 'a.img');
    await writeFile(path, '');
    // Its blockemu (pid 1 here, never its parent) is gone: an orphan that dies 0.3 s later.
    const h = await holder(path, 0.3, 1);
    const fh = await open(path, 'r+');
    const lock = new ImageLock(fh.fd, path);
    try {
      await expect(lock.acquire(W, 0)).resolves.toBeUndefined();
      expect(h.exitCode).toBe(0);
    } finally {
      await lock.release();
      await fh.close();
    }
  });

  it('are not waited for when the holder still has its blockemu: the conflict is reported at once', async () => {
    const path = join(dir, 'b.img');
    await writeFile(path, '');
    // It lives 1 s: were it waited for (up to 2 s), the lock would be had.
    const h = await holder(path, 1, process.pid);
    const fh = await open(path, 'r+');
    const lock = new ImageLock(fh.fd, path);
    try {
      const err = await lock.acquire(W, 0).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageLockError);
      expect((err as Error).message).toBe('Failed to get "write" lock');
      expect(h.exitCode).toBeNull();
    } finally {
      h.kill('SIGKILL');
      await lock.release();
      await fh.close();
    }
  });
});
