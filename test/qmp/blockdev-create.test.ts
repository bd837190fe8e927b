/**
 * blockdev-create over QMP against what qemu-storage-daemon 7.2 answers
 * (the same sessions were played against qsd): the create job's status
 * sequence without BLOCK_JOB_* events, manual dismiss, errors as the
 * command's reply or as the concluded job's error, images that qemu-img
 * checks and reads, and a backup into a created qcow2.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/embed.js';
import type { QmpClient, QmpEvent } from '../../src/qmp/client.js';
import { qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';
import { compareSessions, type Step } from '../helpers/qmp-session.js';

const MiB = 1 << 20;
const statuses = (events: QmpEvent[], id: string) =>
  events.map((e) => (e.event === 'JOB_STATUS_CHANGE' && e.data?.['id'] === id ? e.data['status'] : e.event));

/** Runs one blockdev-create to its concluded state; returns the job's query-jobs entry and its events; dismisses it. */
async function create(c: QmpClient, id: string, options: Record<string, unknown>) {
  c.takeEvents();
  expect(await c.execute<unknown>('blockdev-create', { 'job-id': id, options })).toEqual({});
  const concluded = await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['id'] === id && e.data['status'] === 'concluded');
  // waitForEvent takes the event it waited for out of the backlog, and leaves those before it.
  const events = [...c.takeEvents(), concluded];
  const jobs = await c.execute<Array<Record<string, unknown>>>('query-jobs');
  const job = jobs.find((j) => j['id'] === id)!;
  expect(await c.execute('job-dismiss', { id })).toEqual({});
  const nulled = await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['id'] === id && e.data['status'] === 'null');
  return { job, events: statuses([...events, ...c.takeEvents(), nulled], id) };
}

describe('blockdev-create over QMP', () => {
  it('file then qcow2 into the file node: created, running, waiting, pending, concluded, manual dismiss; qemu-img accepts the image', async () => {
    await withTempDir(async (dir) => {
      const d = await startDaemon({});
      try {
        const c = await d.client();
        const img = join(dir, 'a.qcow2');
        const f = await create(c, 'c0', { driver: 'file', filename: img, size: 0 });
        expect(f.job).toEqual({ id: 'c0', type: 'create', status: 'concluded', 'current-progress': 1, 'total-progress': 1 });
        expect(f.events).toEqual(['created', 'running', 'waiting', 'pending', 'concluded', 'null']);
        await c.execute('blockdev-add', { driver: 'file', 'node-name': 'f', filename: img });
        const q = await create(c, 'c1', { driver: 'qcow2', file: 'f', size: 64 * MiB, 'lazy-refcounts': true, 'refcount-bits': 8, 'cluster-size': 4096 });
        expect(q.job['error']).toBeUndefined();
        expect(q.events).toEqual(['created', 'running', 'waiting', 'pending', 'concluded', 'null']);
        if (qemu.available) {
          expect((await qemuImg('check', '-U', img)).code).toBe(0);
          const info = JSON.parse((await qemuImg('info', '-U', '--output=json', img)).stdout);
          expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': 64 * MiB, 'cluster-size': 4096 });
          expect(info['format-specific']['data']).toMatchObject({ compat: '1.1', 'lazy-refcounts': true, 'refcount-bits': 8 });
        }
        const v2 = await create(c, 'c2', { driver: 'qcow2', file: 'f', size: MiB, version: 'v2' });
        expect(v2.job['error']).toBeUndefined();
        if (qemu.available) {
          expect((await qemuImg('check', '-U', img)).code).toBe(0);
          const info = JSON.parse((await qemuImg('info', '-U', '--output=json', img)).stdout);
          expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': MiB });
          expect(info['format-specific']['data']).toMatchObject({ compat: '0.10' });
        }
      } finally {
        await d.close();
      }
    });
  });

  it("QEMU's errors: in the reply before a job exists, or as the concluded job's error (aborting, no waiting/pending)", async () => {
    await withTempDir(async (dir) => {
      const d = await startDaemon({});
      try {
        const c = await d.client();
        const img = join(dir, 'a.img');
        await writeFile(img, '');
        await c.execute('blockdev-add', { driver: 'file', 'node-name': 'f', filename: img });
        const reply = (options: Record<string, unknown>, id = 'x') => c.execute<unknown>('blockdev-create', { 'job-id': id, options });
        await expect(reply({ driver: 'raw', file: 'f', size: MiB })).rejects.toMatchObject({ qmpClass: 'GenericError', desc: "Parameter 'options.size' is unexpected" });
        await expect(reply({ driver: 'raw' })).rejects.toMatchObject({ desc: 'Driver does not support blockdev-create' });
        await expect(reply({ driver: 'null-co' })).rejects.toMatchObject({ desc: 'Driver does not support blockdev-create' });
        await expect(reply({ driver: 'qcow2', file: 'f' })).rejects.toMatchObject({ desc: "Parameter 'options.size' is missing" });
        await expect(reply({ driver: 'qcow2', file: 'f', size: 1, bogus: 1 })).rejects.toMatchObject({ desc: "Parameter 'options.bogus' is unexpected" });
        await expect(reply({ driver: 'bogus' })).rejects.toMatchObject({ desc: "Parameter 'driver' does not accept value 'bogus'" });
        await expect(reply({ driver: 'qcow2', file: 'f', size: 1, version: 'v4' })).rejects.toMatchObject({ desc: "Parameter 'version' does not accept value 'v4'" });
        await expect(c.execute<unknown>('blockdev-create', { 'job-id': 'x' })).rejects.toMatchObject({ desc: "Parameter 'options' is missing" });
        await expect(reply({ driver: 'file', filename: join(dir, 'e'), size: MiB }, '1x')).rejects.toMatchObject({ desc: "Invalid job ID '1x'" });
        await expect(reply({ driver: 'vmdk', file: 'f', size: MiB })).rejects.toMatchObject({ desc: "blockdev-create for driver 'vmdk' is not supported by blockemu" });

        const failures: Array<[Record<string, unknown>, string]> = [
          [{ size: 1000 }, 'Image size must be a multiple of 512 bytes'],
          [{ size: MiB, 'cluster-size': 1000 }, 'Cluster size must be a power of two between 512 and 2048k'],
          [{ size: MiB, file: 'nope' }, "Cannot find device='nope' nor node-name='nope'"],
          [{ size: MiB, version: 'v2', 'refcount-bits': 8 }, 'Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)'],
          [{ size: MiB, version: 'v2', 'lazy-refcounts': true }, 'Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)'],
          [{ size: MiB, 'refcount-bits': 3 }, 'Refcount width must be a power of two and may not exceed 64 bits'],
          [{ size: MiB, 'backing-fmt': 'raw' }, 'Backing format cannot be used without backing file'],
          [{ size: MiB, version: 'v2', 'compression-type': 'zstd' }, 'Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)'],
        ];
        for (const [opts, error] of failures) {
          const r = await create(c, 'e', { driver: 'qcow2', file: 'f', ...opts });
          expect(r.job['error']).toBe(error);
          expect(r.events).toEqual(['created', 'running', 'aborting', 'concluded', 'null']);
        }
        const nodir = await create(c, 'e', { driver: 'file', filename: join(dir, 'nodir', 'x'), size: MiB });
        expect(nodir.job['error']).toBe(`Could not create '${join(dir, 'nodir', 'x')}': No such file or directory`);
        const meta = await create(c, 'e', { driver: 'file', filename: join(dir, 'm.raw'), size: MiB, preallocation: 'metadata' });
        expect(meta.job['error']).toBe('Unsupported preallocation mode: metadata');

        // A job id stays taken until the job is dismissed.
        await reply({ driver: 'file', filename: join(dir, 'd.raw'), size: MiB }, 'dup');
        await expect(reply({ driver: 'file', filename: join(dir, 'd.raw'), size: MiB }, 'dup')).rejects.toMatchObject({ desc: "Job ID 'dup' already in use" });
        await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['id'] === 'dup' && e.data['status'] === 'concluded');
        // Not a block job: query-block-jobs does not list it, block-job-* do not find it.
        expect(await c.execute('query-block-jobs')).toEqual([]);
        await expect(c.execute('block-job-cancel', { device: 'dup' })).rejects.toMatchObject({ qmpClass: 'DeviceNotActive', desc: "Block job 'dup' not found" });
        await c.execute('job-dismiss', { id: 'dup' });

        // A node a format node uses is refused as QEMU's permission system refuses it.
        const r = await create(c, 'p', { driver: 'file', filename: img, size: 0 });
        expect(r.job['error']).toBeUndefined();
        await create(c, 'p', { driver: 'qcow2', file: 'f', size: MiB });
        await c.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: 'f' });
        const inUse = await create(c, 'p', { driver: 'qcow2', file: 'f', size: MiB });
        expect(inUse.job['error']).toBe(
          "Permission conflict on node 'f': permissions 'write, resize' are both required by an unnamed block device (uses node 'f' as 'root' child) and unshared by node 'q' (uses node 'f' as 'file' child).",
        );
      } finally {
        await d.close();
      }
    });
  });

  it('file creation: exact size, full preallocation writes the bytes', async () => {
    await withTempDir(async (dir) => {
      const d = await startDaemon({});
      try {
        const c = await d.client();
        await create(c, 'a', { driver: 'file', filename: join(dir, 'b.raw'), size: 1000, nocow: true });
        expect((await stat(join(dir, 'b.raw'))).size).toBe(1000);
        await create(c, 'b', { driver: 'file', filename: join(dir, 'c.raw'), size: MiB, preallocation: 'full' });
        const st = await stat(join(dir, 'c.raw'));
        expect(st.size).toBe(MiB);
        expect(st.blocks * 512).toBeGreaterThanOrEqual(MiB);
      } finally {
        await d.close();
      }
    });
  });

  it.each([
    ['zlib', false],
    ['zstd', true],
  ] as const)('end to end: create file, create qcow2 (compression %s) on it, blockdev-add, blockdev-backup into it (compress: %s); the target reads as the source', async (compression, compress) => {
    await withTempDir(async (dir) => {
      const data = new Uint8Array(4 * MiB);
      for (let i = 0; i < data.length; i += 4096) data[i] = ((i >> 12) % 251) + 1;
      await writeFile(join(dir, 's.raw'), data);
      const d = await startDaemon({ blockdevs: [{ driver: 'raw', 'node-name': 'src', file: { driver: 'file', filename: join(dir, 's.raw') } }] });
      try {
        const c = await d.client();
        const tgt = join(dir, 't.qcow2');
        await create(c, 'c0', { driver: 'file', filename: tgt, size: 0 });
        await c.execute('blockdev-add', { driver: 'file', 'node-name': 'tf', filename: tgt });
        expect((await create(c, 'c1', { driver: 'qcow2', file: 'tf', size: 4 * MiB, 'compression-type': compression })).job['error']).toBeUndefined();
        await c.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'tgt', file: 'tf' });
        await c.execute('blockdev-backup', { 'job-id': 'b', device: 'src', target: 'tgt', sync: 'full', compress });
        await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === 'b');
        await c.execute('blockdev-del', { 'node-name': 'tgt' });
        await c.execute('blockdev-del', { 'node-name': 'tf' });
        if (qemu.available) {
          expect((await qemuImg('check', tgt)).code).toBe(0);
          expect((await qemuImg('compare', '-U', '-f', 'raw', '-F', 'qcow2', join(dir, 's.raw'), tgt)).code).toBe(0);
          const info = JSON.parse((await qemuImg('info', '--output=json', tgt)).stdout);
          expect(info['format-specific']['data']['compression-type']).toBe(compression);
          // Compressed, the 4 MiB of sparse bytes take a few KiB.
          if (compress) expect(info['actual-size']).toBeLessThan(MiB);
        }
        expect((await readFile(join(dir, 's.raw'))).equals(Buffer.from(data))).toBe(true);
      } finally {
        await d.close();
      }
    });
  });
});

describe.skipIf(!qemu.available || !qemu.storageDaemon)('blockdev-create with inline node definitions, as qemu-storage-daemon runs it', () => {
  it('qcow2 onto an inline file node (and data file): opened when the job runs, gone when it ends; an inline node that cannot open is the job error (iotest 206)', async () => {
    const info = (name: string) => async (dir: string) => {
      const r = await run('qemu-img', ['info', '-U', '--output=json', join(dir, name)]);
      if (r.code !== 0) return r.stderr;
      const i = JSON.parse(r.stdout) as Record<string, unknown>;
      return { format: i['format'], size: i['virtual-size'], cluster: i['cluster-size'], specific: i['format-specific'] };
    };
    const create = (id: string, options: Record<string, unknown>): Step[] => [
      ['blockdev-create', { 'job-id': id, options }],
      { waitJob: id, status: 'concluded' },
      ['query-jobs'],
      ['job-dismiss', { id }],
      { waitJob: id },
      ['query-named-block-nodes', { flat: true }],
    ];
    await compareSessions(async () => undefined, [
      ...create('f', { driver: 'file', filename: '${DIR}/a.qcow2', size: 0 }),
      ...create('q', { driver: 'qcow2', file: { driver: 'file', filename: '${DIR}/a.qcow2' }, size: 32 * MiB, 'cluster-size': 2 * MiB, 'lazy-refcounts': true, 'refcount-bits': 1, preallocation: 'metadata' }),
      { sh: info('a.qcow2') },
      // (luks takes the same path; it is left out here because qemu-storage-daemon's LUKS creation fails
      // now and then on this machine's coarse thread CPU clock: "Unable to get accurate CPU usage".)
      ...create('f2', { driver: 'file', filename: '${DIR}/b.qcow2', size: 0 }),
      ...create('f3', { driver: 'file', filename: '${DIR}/data', size: 0 }),
      ...create('d', { driver: 'qcow2', file: { driver: 'file', filename: '${DIR}/b.qcow2' }, 'data-file': { driver: 'file', filename: '${DIR}/data' }, size: MiB }),
      { sh: info('b.qcow2') },
      ...create('bad', { driver: 'qcow2', file: { driver: 'file', filename: '${DIR}/missing.qcow2' }, size: MiB }),
    ]);
  }, 60_000);
});
