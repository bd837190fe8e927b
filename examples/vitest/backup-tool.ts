/**
 * What a backup tool's test helpers look like on blockemu: guest disks
 * made before the daemon starts, guest writes through the monitor, a
 * consistent full backup of several disks with a dirty bitmap in one
 * transaction, and checks on the images the backup wrote.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createImage, openImage, type QmpClient } from 'blockemu';
import { withDaemon } from 'blockemu/vitest';

export const MiB = 1 << 20;
export const DISK_SIZE = 4 * MiB;
export const DISKS = ['disk0', 'disk1'] as const;

/**
 * Two empty qcow2 disks in the test's workdir, as nodes disk0 and disk1
 * (what the backup tool backs up), each under a `<disk>-guest` node, the
 * guest's view: a backup puts its copy-before-write filter between the two,
 * so the guest's writes reach the disk only after the old data is saved.
 * (Writing to disk0 itself while a backup runs is refused, as in QEMU: it
 * would bypass the filter.)
 */
export const test = withDaemon(async ({ workdir }) => {
  for (const d of DISKS) await createImage(join(workdir, `${d}.qcow2`), { format: 'qcow2', size: DISK_SIZE });
  return {
    blockdevs: DISKS.flatMap((d) => [
      { driver: 'qcow2', 'node-name': d, file: { driver: 'file', filename: join(workdir, `${d}.qcow2`) } },
      { driver: 'raw', 'node-name': `${d}-guest`, file: d },
    ]),
  };
});

/** A guest write to a disk: qemu-io's `write -P` through the monitor on the disk's guest node, as QEMU's iotests do. */
export async function guestWrite(qmp: QmpClient, disk: string, pattern: number, offset: number, length: number): Promise<void> {
  const out = await qmp.execute('human-monitor-command', { 'command-line': `qemu-io ${disk}-guest "write -P ${pattern} ${offset} ${length}"` });
  if (!out.startsWith('wrote')) throw new Error(`guest write failed: ${out}`);
}

/** How many bytes a node's bitmap has marked dirty. */
export async function dirtyBytes(qmp: QmpClient, node: string, bitmap: string): Promise<number | undefined> {
  const nodes = await qmp.execute('query-named-block-nodes', { flat: true });
  return nodes.find((n) => n['node-name'] === node)?.['dirty-bitmaps']?.find((b) => b.name === bitmap)?.count;
}

/**
 * The full backup a backup tool starts with: in one transaction, a new
 * bitmap on every disk (to track what the guest writes from then on) and a
 * full drive-backup of each into `<disk>.full.qcow2`, so the backups and
 * the bitmaps all start from the same instant. Resolves once both jobs
 * completed.
 */
export async function fullBackup(qmp: QmpClient, workdir: string, afterStart?: () => Promise<void>): Promise<void> {
  const actions = DISKS.flatMap((d) => [
    { type: 'block-dirty-bitmap-add' as const, data: { node: d, name: 'bm' } },
    { type: 'drive-backup' as const, data: { 'job-id': `full-${d}`, device: d, target: join(workdir, `${d}.full.qcow2`), format: 'qcow2', sync: 'full' as const } },
  ]);
  // Waiters set up before the jobs start; each sees the events it waits for, whatever the other does.
  const done = DISKS.map((d) => qmp.waitForAny(['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'], (e) => e.data.device === `full-${d}`, { timeoutMs: 30_000 }));
  const ended = Promise.all(done);
  try {
    await qmp.execute('transaction', { actions });
    await afterStart?.();
  } catch (err) {
    ended.catch(() => undefined); // the waits fail when the daemon closes after the test; this error is the one to report
    throw err;
  }
  for (const e of await ended) {
    if (e.event !== 'BLOCK_JOB_COMPLETED' || e.data.error !== undefined) throw new Error(`backup ${e.data.device} did not complete: ${JSON.stringify(e)}`);
  }
}

/**
 * The bytes of an image (through its backing chain), read with blockemu's
 * image API. For images the daemon no longer has open (a finished
 * backup's): one still open may have metadata the daemon has not written
 * back yet, as with QEMU.
 */
export async function readImage(path: string, offset = 0, length = DISK_SIZE): Promise<Buffer> {
  const img = await openImage(path, { readOnly: true });
  try {
    return Buffer.from(await img.read(offset, length));
  } finally {
    await img.close();
  }
}

/** A run of one byte. */
export const bytes = (pattern: number, length: number) => Buffer.alloc(length, pattern);

const run = promisify(execFile);

/** Without QEMU's tools their checks are left out, except in CI (CI=true), where that is a failure. */
function noQemu(err: unknown): undefined {
  if (process.env['CI'] === 'true') throw new Error(`qemu-img is missing (CI=true: a failure, not a skip): ${(err as Error).message}`);
  return undefined;
}

/** qemu-img with its JSON output parsed, when QEMU's tools are installed (undefined when not). */
export async function qemuImgJson(...args: string[]): Promise<unknown> {
  try {
    const { stdout } = await run('qemu-img', [...args, '--output=json']);
    return JSON.parse(stdout) as unknown;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return noQemu(err);
    throw err;
  }
}

/** `qemu-img check`, `qemu-img compare -U`: their exit codes, or undefined without QEMU's tools. */
export async function qemuImg(...args: string[]): Promise<number | undefined> {
  try {
    await run('qemu-img', args);
    return 0;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { code: number | string };
    if (e.code === 'ENOENT') return noQemu(err);
    if (typeof e.code === 'number') return e.code;
    throw err;
  }
}
