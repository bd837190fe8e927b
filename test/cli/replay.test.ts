import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { planDaemon, replayArgv } from '../../src/cli/daemon.js';
import { parseDaemonArgs } from '../../src/cli/daemon-args.js';
import { startDaemon } from '../../src/embed.js';
import { QmpClient } from '../../src/qmp/client.js';
import { BLOCKEMU, blockemu, qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';
import { connectToQsd } from '../helpers/qsd.js';

/** Two qcow2 images in `dir`: a source with data, an empty target. */
async function images(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  expect((await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'src.qcow2'), '1M')).code).toBe(0);
  expect((await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'tgt.qcow2'), '1M')).code).toBe(0);
  expect((await qemuIo('-c', 'write -P 7 0 192k', join(dir, 'src.qcow2'))).code).toBe(0);
}

/**
 * A backup tool's session against `blockemu daemon --record`: a bitmap and
 * a full backup in one transaction, waiting for the job, an error, quit.
 * Relative image paths: the daemon runs in `dir`.
 */
async function recordSession(dir: string, record: string): Promise<void> {
  const sock = join(dir, 'qmp.sock');
  const proc = spawn(
    process.execPath,
    [
      BLOCKEMU,
      'daemon',
      '--blockdev',
      'driver=qcow2,node-name=src,file.driver=file,file.filename=src.qcow2',
      '--chardev',
      `socket,id=m0,path=${sock},server=on,wait=off`,
      '--monitor',
      'chardev=m0',
      '--record',
      record,
    ],
    { cwd: dir, stdio: 'ignore' },
  );
  const exited = new Promise((r) => proc.once('exit', r));
  (await connectToQsd(sock)).destroy();
  const c = await QmpClient.connect(sock);
  await c.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'tgt', file: { driver: 'file', filename: join(dir, 'tgt.qcow2') } });
  await c.execute('transaction', {
    actions: [
      { type: 'block-dirty-bitmap-add', data: { node: 'src', name: 'b0' } },
      { type: 'blockdev-backup', data: { device: 'src', target: 'tgt', sync: 'full', 'job-id': 'full0', 'auto-dismiss': false } },
    ],
  });
  await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['status'] === 'concluded', 10_000);
  await c.execute('job-dismiss', { id: 'full0' });
  await c.execute('query-block-jobs');
  await c.execute('query-named-block-nodes', { flat: true }).catch(() => undefined);
  await c.execute('block-dirty-bitmap-add', { node: 'nosuch', name: 'b0' }).catch(() => undefined);
  await c.execute('quit');
  await exited;
}

describe('daemon --record', () => {
  it('is a blockemu option; the header keeps the command line without it', () => {
    const opts = parseDaemonArgs(['--record', 'r.jsonl', '--blockdev', 'driver=null-co,node-name=n', '--daemonize']);
    expect(planDaemon(opts).record).toMatch(/\/r\.jsonl$/);
    expect(replayArgv(opts)).toEqual(['--blockdev', 'driver=null-co,node-name=n', '--daemonize']);
  });
});

describe.skipIf(!qemu.available || !qemu.storageDaemon)('record on blockemu, replay on qemu-storage-daemon', () => {
  it('replays with no difference, and reports an edited reply with exit 1', { timeout: 60_000 }, async () => {
    await withTempDir(async (root) => {
      const recDir = join(root, 'rec');
      const record = join(root, 'session.jsonl');
      await images(recDir);
      await recordSession(recDir, record);

      const lines = (await readFile(record, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines[0]).toMatchObject({ 'blockemu-qmp-record': 1, cwd: recDir, argv: expect.arrayContaining(['--blockdev']) as unknown });
      expect(lines[0]!['argv']).not.toContain('--record');
      const body = lines.slice(1);
      // The connection that waited for the socket is recorded too (connect, greeting, hang-up), then the session's.
      expect(body[0]).toMatchObject({ dir: 'open', conn: `${join(recDir, 'qmp.sock')}#1` });
      expect(body.some((l) => l['conn'] === `${join(recDir, 'qmp.sock')}#2`)).toBe(true);
      expect(body.every((l) => typeof l['t'] === 'number')).toBe(true);
      expect(body.some((l) => l['dir'] === 'in' && String(l['text']).includes('"transaction"'))).toBe(true);
      expect(body.some((l) => l['dir'] === 'out' && (l['msg'] as { event?: string }).event === 'BLOCK_JOB_COMPLETED')).toBe(true);
      expect(body.at(-1)).toMatchObject({ dir: 'close' });

      // Fresh images in another directory: the recorded paths are rewritten to it.
      const qsdDir = join(root, 'qsd');
      await images(qsdDir);
      // actual-size (disk usage, seen here while the target is open) is left out: it depends on
      // when each daemon's writes reach the file. What the image holds is compared below.
      const same = await blockemu('replay', record, '--qsd', '--dir', qsdDir, '--ignore-key', 'actual-size');
      expect(same.stderr).toBe('');
      expect(same.stdout).toMatch(/^replay: \d+ compared, 0 different\n$/);
      expect(same.code).toBe(0);
      // The replayed backup did the same to qemu-storage-daemon's target as to ours.
      expect((await qemuImg('compare', join(recDir, 'tgt.qcow2'), join(qsdDir, 'tgt.qcow2'))).code).toBe(0);

      // An edited recording: the error's desc is not what a daemon says.
      const edited = join(root, 'edited.jsonl');
      await writeFile(edited, (await readFile(record, 'utf8')).replace("Cannot find device='nosuch'", "Cannot find device='other'"));
      const ednDir = join(root, 'edited');
      await images(ednDir);
      const differs = await blockemu('replay', edited, '--qsd', '--dir', ednDir, '--ignore-key', 'actual-size');
      expect(differs.code).toBe(1);
      expect(differs.stdout).toMatch(/recorded: \{"error":\{"class":"GenericError","desc":"Cannot find device='other' nor node-name='nosuch'"\},"id":\d+\}\n/);
      expect(differs.stdout).toMatch(/replayed: \{"error":\{"class":"GenericError","desc":"Cannot find device='nosuch' nor node-name='nosuch'"\},"id":\d+\}\n/);
      expect(differs.stdout).toMatch(/replay: \d+ compared, 1 different\n$/);
    });
  });

  it('reports a missing event and a different event stream', { timeout: 60_000 }, async () => {
    await withTempDir(async (root) => {
      const recDir = join(root, 'rec');
      const record = join(root, 'session.jsonl');
      await images(recDir);
      await recordSession(recDir, record);
      const text = await readFile(record, 'utf8');
      const edited = join(root, 'edited.jsonl');
      await writeFile(edited, text.replace('"type": "backup"', '"type": "mirror"'));
      const dir = join(root, 'b');
      await images(dir);
      const r = await blockemu('replay', edited, '--blockemu', '--dir', dir, '--timeout', '1');
      expect(r.code).toBe(1);
      expect(r.stdout).toContain('events of job full0 differ');
      expect(r.stdout).toContain('"type":"mirror"');
    });
  });

  it('records an embedded daemon (startDaemon({ record })) with a command line qemu-storage-daemon replays', { timeout: 60_000 }, async () => {
    await withTempDir(async (root) => {
      const record = join(root, 'embedded.jsonl');
      const image = join(root, 'd.raw');
      expect((await qemuImg('create', '-q', '-f', 'raw', image, '1M')).code).toBe(0);
      const d = await startDaemon({ record, blockdevs: [{ driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: image } }] });
      try {
        const c = await d.client();
        await c.execute('block-dirty-bitmap-add', { node: 'd0', name: 'b0', granularity: 65536 });
        await c.execute('block-dirty-bitmap-add', { node: 'd0', name: 'b0' }).catch(() => undefined);
        await c.execute('query-block-jobs');
      } finally {
        await d.close();
      }
      const header = JSON.parse((await readFile(record, 'utf8')).split('\n')[0]!) as { argv: string[] };
      expect(header.argv.slice(0, 2)).toEqual(['--blockdev', JSON.stringify({ driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: image } })]);
      const r = await blockemu('replay', record, '--qsd');
      expect(r.stderr).toBe('');
      // Greeting, qmp_capabilities, three commands, and the connection's events (none).
      expect(r.stdout).toMatch(/^replay: 6 compared, 0 different\n$/);
      expect(r.code).toBe(0);

      // --against: a daemon already running (here another embedded one on a fresh image).
      const image2 = join(root, 'd2.raw');
      expect((await qemuImg('create', '-q', '-f', 'raw', image2, '1M')).code).toBe(0);
      const d2 = await startDaemon({ blockdevs: [{ driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: image2 } }] });
      try {
        const against = await blockemu('replay', record, '--against', d2.socketPath);
        expect(against.stdout).toBe('replay: 6 compared, 0 different\n');
        expect(against.code).toBe(0);
        // The bitmap the replay added is there: the session did run on d2.
        const c = await d2.client();
        const nodes = (await c.execute('query-named-block-nodes')) as Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name: string }> }>;
        expect(nodes.find((n) => n['node-name'] === 'd0')?.['dirty-bitmaps']?.map((b) => b.name)).toEqual(['b0']);
      } finally {
        await d2.close();
      }

      // --pace: the last command was sent 1.5 s into the recording (edited so); the replay waits as long before sending it.
      const lines = (await readFile(record, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { t: number; dir?: string });
      const lastIn = lines.map((l) => l.dir).lastIndexOf('in');
      lines[lastIn]!.t = lines[0]!.t + 1.5;
      const paced = join(root, 'paced.jsonl');
      await writeFile(paced, lines.map((l) => JSON.stringify(l)).join('\n'));
      const t0 = performance.now();
      const r2 = await blockemu('replay', paced, '--blockemu', '--pace');
      expect(performance.now() - t0).toBeGreaterThanOrEqual(1500);
      expect(r2.stdout).toBe('replay: 6 compared, 0 different\n');
    });
  });

  it('exits 2 when the daemon cannot start, with its stderr', async () => {
    await withTempDir(async (root) => {
      const record = join(root, 'r.jsonl');
      await writeFile(record, `${JSON.stringify({ 'blockemu-qmp-record': 1, argv: ['--blockdev', 'driver=qcow2,node-name=x,file.driver=file,file.filename=missing.qcow2', '--chardev', `socket,id=m,path=${root}/q.sock,server=on,wait=off`, '--monitor', 'chardev=m'], cwd: root, program: 'x' })}\n`);
      const r = await blockemu('replay', record, '--qsd');
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('missing.qcow2');
    });
  });
});
