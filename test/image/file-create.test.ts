/**
 * New files as QEMU leaves them on disk, down to their allocated blocks:
 * file-posix writes the first block of a file that grows from empty
 * (allocate_first_block: 512 bytes under 4 KiB, else 4 KiB, lengthening a
 * shorter file), and qcow2 creation writes its whole header cluster and
 * truncates nothing. Compared through qemu-img / blockemu img create, and
 * through blockdev-create, drive-backup and blockdev-snapshot-sync on both
 * daemons: each file's length, allocated blocks (st_blocks) and bytes.
 * And its locks: raw_co_create takes write and resize, checked against
 * every other user, before an existing file is emptied.
 */
import { createHash } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CREATE_PERMS, createHostFile } from '../../src/image/file-create.js';
import { ofdLocksAvailable } from '../../src/image/file-lock.js';
import { HostFile } from '../../src/image/file.js';
import { createImage } from '../../src/image/open.js';
import { type Daemon, OURS, outcome, startExportDaemon } from '../helpers/export-daemon.js';
import { lockedBytes, refusal } from '../helpers/locks.js';
import { blockemu, qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

/** What a file is on disk: length, blocks allocated, and a digest of its bytes (`dir` in them, a backing file name, blanked). */
async function onDisk(path: string, dir?: string): Promise<string> {
  const st = await stat(path);
  let bytes = await readFile(path);
  if (dir !== undefined) bytes = Buffer.from(bytes.toString('latin1').replaceAll(dir, '#'.repeat(dir.length)), 'latin1');
  return `${st.size} bytes, ${st.blocks} blocks, ${createHash('md5').update(bytes).digest('hex')}`;
}

const SIZES = ['0', '100', '512', '4095', '4096', '1M'];

describe.skipIf(!qemu.available)('img create: the files on disk', () => {
  it('raw and qcow2 files as qemu-img writes them, first block and header cluster allocated', async () => {
    await withTempDir(async (dir) => {
      for (const fmt of ['raw', 'qcow2']) {
        for (const size of SIZES) {
          const q = join(dir, `q-${size}.${fmt}`);
          const e = join(dir, `e-${size}.${fmt}`);
          expect((await qemuImg('create', '-q', '-f', fmt, q, size)).code).toBe(0);
          expect((await blockemu('img', 'create', '-q', '-f', fmt, e, size)).code).toBe(0);
          expect(await onDisk(e), `${fmt} ${size}`).toBe(await onDisk(q));
        }
      }
    });
  }, 60_000);
});

async function session(which: Daemon): Promise<{ log: unknown[]; files: Record<string, string> }> {
  return withTempDir(async (dir) => {
    const src = Buffer.alloc(1 << 20);
    src.fill(1, 0, 65536);
    src.fill(2, 512 << 10, (512 << 10) + 4096);
    await writeFile(join(dir, 's.raw'), src);
    await writeFile(join(dir, 'empty.img'), '');
    await writeFile(join(dir, 'junk.img'), Buffer.alloc(3 << 20, 9));
    const file = (name: string, size: number, preallocation?: string) => ({ driver: 'file', filename: join(dir, name), size, ...(preallocation ? { preallocation } : {}) });
    const steps: Array<[string, Record<string, unknown>]> = [];
    const created: string[] = [];
    for (const size of [0, 100, 512, 4095, 4096, 1 << 20]) {
      steps.push(['blockdev-create', { 'job-id': `c${size}`, options: file(`c${size}.raw`, size) }]);
      created.push(`c${size}.raw`);
    }
    steps.push(['blockdev-create', { 'job-id': 'fa', options: file('falloc.raw', 100, 'falloc') }]);
    steps.push(['blockdev-create', { 'job-id': 'fu', options: file('full.raw', 100, 'full') }]);
    steps.push(['blockdev-create', { 'job-id': 'q0', options: { driver: 'qcow2', file: 'empty', size: 1 << 20 } }]);
    steps.push(['blockdev-create', { 'job-id': 'q1', options: { driver: 'qcow2', file: 'junk', size: 1 << 20 } }]);
    // sync full writes every byte, the zeroes too (QEMU's file-posix allocates them: FALLOC_FL_ZERO_RANGE).
    for (const format of ['raw', 'qcow2']) {
      steps.push(['drive-backup', { 'job-id': `b-${format}`, device: 'src', sync: 'full', target: join(dir, `backup.${format}`), format }]);
      created.push(`backup.${format}`);
    }
    // An empty bitmap: the incremental backup copies nothing, so the raw target is the file as drive-backup creates it
    // (sync full would write zeroes over all of it, top without a backing file is full, none needs a backing file).
    steps.push(['block-dirty-bitmap-add', { node: 'src', name: 'bm' }]);
    steps.push(['drive-backup', { 'job-id': 'inc', device: 'src', sync: 'incremental', bitmap: 'bm', target: join(dir, 'inc.raw'), format: 'raw' }]);
    steps.push(['blockdev-snapshot-sync', { 'node-name': 'src', 'snapshot-file': join(dir, 'overlay.qcow2'), 'snapshot-node-name': 'ov' }]);
    created.push('inc.raw', 'falloc.raw', 'full.raw', 'empty.img', 'junk.img', 'overlay.qcow2');
    const d = await startExportDaemon(which, {
      dir,
      blockdevs: [`driver=file,node-name=sf,filename=${join(dir, 's.raw')}`, 'driver=raw,node-name=src,file=sf', `driver=file,node-name=empty,filename=${join(dir, 'empty.img')}`, `driver=file,node-name=junk,filename=${join(dir, 'junk.img')}`],
    });
    const log: unknown[] = [];
    try {
      for (const [cmd, args] of steps) {
        // One job at a time, each to its end (qemu-storage-daemon 7.2 dies on quit with a create job running).
        const id = args['job-id'];
        const r = await outcome(d.client, dir, cmd, args);
        log.push(r);
        if (id !== undefined && 'return' in r) await d.client.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['id'] === id && e.data['status'] === 'concluded');
      }
      log.push(await outcome(d.client, dir, 'query-jobs'));
    } finally {
      await d.quit();
    }
    const files: Record<string, string> = {};
    for (const f of created) files[f] = await onDisk(join(dir, f), dir);
    return { log, files };
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('files created over QMP', () => {
  it('blockdev-create (file, qcow2 into a node), drive-backup targets, a snapshot overlay: the same files as qemu-storage-daemon leaves', async () => {
    const theirs = await session('qsd');
    expect(theirs.files['c100.raw']).toMatch(/^512 bytes, 8 blocks/);
    expect(theirs.files['inc.raw']).toMatch(/^1048576 bytes, 8 blocks/);
    expect(await session(OURS)).toEqual(theirs);
  }, 60_000);
});

const ofd = await ofdLocksAvailable();
if (!ofd) console.warn('SKIP: this machine cannot take OFD locks through perl (see resolveLocking)');

describe.skipIf(!ofd)('image locks of a new file (raw_co_create)', () => {
  it('creating over an image in use is refused before anything is emptied', async () => {
    await withTempDir(async (dir) => {
      const raw = join(dir, 'in-use.raw');
      await writeFile(raw, Buffer.alloc(4096, 0x5a));
      const holder = await HostFile.open(raw, { locking: 'auto' });
      // A writer that lets others only read
      await holder.lockPerms(1 | 2, 1);
      const refused = { message: 'Failed to get "write" lock', hint: `Is another process using the image [${raw}]?` };
      try {
        expect(await refusal(createHostFile(raw, 512))).toEqual(refused);
        expect(await refusal(createImage(raw, { format: 'qcow2', size: 1 << 20 }))).toEqual(refused);
        expect((await stat(raw)).size).toBe(4096);
        expect((await readFile(raw))[0]).toBe(0x5a);
      } finally {
        await holder.close();
      }
      // Once it is let go, the file is created anew; its create locks go with the descriptor.
      await createHostFile(raw, 512);
      expect((await stat(raw)).size).toBe(512);
      expect(await lockedBytes(raw)).toEqual([]);
      expect(CREATE_PERMS).toEqual({ perm: 2 | 8, shared: 1 | 2 | 4 });
    });
  });
});
