/**
 * QEMU's own NBD clients (qemu-img, qemu-io) against a daemon's NBD
 * exports: each tool run goes to qemu-storage-daemon 7.2 and to ours,
 * started the same way on copies of the same image, and must print the
 * same (timings and temp paths filtered); where a run has a meaning of its
 * own (an export equals its image, a conversion equals it too) that is
 * checked as well. Then the pull-mode fleecing backup of QEMU 7.2: a
 * blockdev-backup sync=none into a temporary overlay of the source, that
 * overlay exported read-only, guest writes to the source, and the export
 * still reading the source as it was. NBD_TEST_OURS=qsd compares qsd with
 * itself.
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QmpClient } from '../../src/qmp/client.js';
import { type Daemon, type ExportDaemon, nbdUri, normalise, OURS, outcome, startExportDaemon, takeEvents } from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo, type RunResult } from '../helpers/qemu.js';

const dirs: string[] = [];
const daemons: ExportDaemon[] = [];
afterAll(async () => {
  for (const d of daemons) await d.quit().catch(() => undefined);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(tag: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `blockemu-nbdi-${tag}-`));
  dirs.push(d);
  return d;
}

/** A tool's result with the temp dir as ${TMP} and qemu-io's timing lines reduced to their counts. */
function view(r: RunResult, dir: string): RunResult {
  const f = (s: string) =>
    s
      .replaceAll(dir, '${TMP}')
      .replace(/^(.* ops); [\d:.]+ sec \(.*\)$/gm, '$1; TIME');
  return { code: r.code, stdout: f(r.stdout), stderr: f(r.stderr) };
}

/** The image the exports show: data, a zero cluster, unallocated space, a sub-cluster write. */
async function sourceImage(path: string): Promise<void> {
  await qemuImg('create', '-q', '-f', 'qcow2', path, '4M');
  const w = await qemuIo('-f', 'qcow2', '-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 1M 512k', '-c', 'write -z 2M 64k', '-c', 'write -P 0x33 3M 4k', path);
  expect(w.code).toBe(0);
}

/** What the guest does through the writable export (and, offline, to the reference copy). */
const GUEST = ['write -P 0x5a 0 64k', 'read -P 0x5a 0 64k', 'write -z 64k 64k', 'discard 128k 64k', 'flush', 'read -P 0 64k 128k', 'write -P 0x77 3M 4k', 'read -P 0x77 3M 4k', 'read -P 0 3076k 60k'];
const qio = (cmds: string[]) => cmds.flatMap((c) => ['-c', c]);

describe.skipIf(!qemu.storageDaemon || !qemu.available)(`QEMU's NBD clients against ${OURS}'s exports (vs qemu-storage-daemon)`, () => {
  interface Side {
    d: ExportDaemon;
    dir: string;
    uri: (name: string) => string;
  }
  const side: Partial<Record<'qsd' | 'ours', Side>> = {};

  beforeAll(async () => {
    for (const [key, which] of [['qsd', 'qsd'], ['ours', OURS]] as const) {
      const dir = await tempDir(key);
      await sourceImage(join(dir, 'src.qcow2'));
      await copyFile(join(dir, 'src.qcow2'), join(dir, 'ref.qcow2'));
      const d = await startExportDaemon(which, {
        dir,
        blockdevs: [`driver=file,node-name=disk-file,filename=${dir}/src.qcow2`, 'driver=qcow2,node-name=disk,file=disk-file'],
        nbdServer: true,
        exports: ['type=nbd,id=e0,node-name=disk,name=exp,writable=on', 'type=nbd,id=e1,node-name=disk,name=ro'],
      });
      daemons.push(d);
      await d.client.execute('block-dirty-bitmap-add', { node: 'disk', name: 'b0' });
      await d.client.execute('block-export-add', { type: 'nbd', id: 'e2', 'node-name': 'disk', name: 'bm', writable: true, bitmaps: ['b0'] });
      side[key] = { d, dir, uri: (name) => nbdUri(d.nbdPath, name) };
    }
  });

  /** Runs a tool against both sides (args may use a function of the side); returns both results, viewed. */
  async function both(tool: (s: Side) => Promise<RunResult>): Promise<{ qsd: RunResult; ours: RunResult }> {
    const q = view(await tool(side.qsd!), side.qsd!.dir);
    const o = view(await tool(side.ours!), side.ours!.dir);
    expect(o).toEqual(q);
    return { qsd: q, ours: o };
  }

  it('qemu-img info (json and human) of an export', async () => {
    const { qsd } = await both((s) => qemuImg('info', '--output=json', s.uri('ro')));
    expect(JSON.parse(qsd.stdout)).toEqual({ 'virtual-size': 4194304, filename: 'nbd+unix:///ro?socket=${TMP}/nbd.sock', format: 'raw' });
    await both((s) => qemuImg('info', s.uri('exp')));
  });

  it('qemu-img info of an export that is not there', async () => {
    const { qsd } = await both((s) => qemuImg('info', '--output=json', s.uri('nosuch')));
    expect(qsd.code).toBe(1);
    expect(qsd.stderr).toContain("server reported: export 'nosuch' not present");
  });

  it('qemu-img map of an export: data, zeroes and holes as the server reports them', async () => {
    const { qsd } = await both((s) => qemuImg('map', '--output=json', s.uri('ro')));
    expect(qsd.code).toBe(0);
  });

  it('qemu-img compare of the export with the image (a copy taken before the daemon started); two connections at once', async () => {
    const { qsd } = await both((s) => qemuImg('compare', '-f', 'raw', '-F', 'qcow2', s.uri('ro'), join(s.dir, 'ref.qcow2')));
    expect(qsd).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    await both((s) => qemuImg('compare', '-f', 'raw', '-F', 'raw', s.uri('ro'), s.uri('exp')));
  });

  it('qemu-img convert of the export to qcow2 equals the image, allocated alike', async () => {
    const r = await both((s) => qemuImg('convert', '-f', 'raw', '-O', 'qcow2', s.uri('ro'), join(s.dir, 'out.qcow2')));
    expect(r.qsd.code).toBe(0);
    const { qsd } = await both((s) => qemuImg('compare', '-f', 'qcow2', '-F', 'qcow2', join(s.dir, 'out.qcow2'), join(s.dir, 'ref.qcow2')));
    expect(qsd).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    await both((s) => qemuImg('map', '--output=json', join(s.dir, 'out.qcow2')));
  });

  it('qemu-io through the writable export: write, read, write -z, discard, flush (the same lines); the export then equals the reference with the same writes', async () => {
    const { qsd } = await both((s) => qemuIo('-f', 'raw', ...qio(GUEST), s.uri('exp')));
    expect(qsd.code).toBe(0);
    expect(qsd.stdout).not.toMatch(/failed|verification/i);
    for (const s of [side.qsd!, side.ours!]) expect((await qemuIo('-f', 'qcow2', ...qio(GUEST), join(s.dir, 'ref.qcow2'))).code).toBe(0);
    const cmp = await both((s) => qemuImg('compare', '-f', 'raw', '-F', 'qcow2', s.uri('ro'), join(s.dir, 'ref.qcow2')));
    expect(cmp.qsd).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    await both((s) => qemuImg('map', '--output=json', s.uri('ro')));
  });

  it('qemu-img map with x-dirty-bitmap reads the exported bitmap (dirty = "data": false)', async () => {
    const { qsd } = await both((s) =>
      qemuImg('map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${s.d.nbdPath},export=bm,x-dirty-bitmap=qemu:dirty-bitmap:b0`),
    );
    const dirty = (JSON.parse(qsd.stdout) as Array<{ start: number; length: number; data: boolean }>).filter((e) => !e.data).map((e) => [e.start, e.length]);
    // The guest's writes, in 64 KiB granules: 0-128k and the granule at 3M. Not the discard at 128k:
    // the node has discard=ignore (the default), and an ignored discard dirties nothing.
    expect(dirty).toEqual([
      [0, 131072],
      [3145728, 65536],
    ]);
  });

  it('qemu-io on the read-only export: writes refused (opening read-write, and with -r), reads past the end', async () => {
    const { qsd } = await both((s) => qemuIo('-f', 'raw', '-c', 'write 0 4k', s.uri('ro')));
    expect(qsd.code).toBe(1);
    await both((s) => qemuIo('-r', '-f', 'raw', '-c', 'write 0 4k', '-c', 'read -v 0 16', s.uri('ro')));
    await both((s) => qemuIo('-r', '-f', 'raw', '-c', 'read -P 0x5a 0 64k', '-c', 'readv 0 512 512', '-c', 'read 4190000 8192', '-c', 'read 4194304 1', s.uri('ro')));
  });
});

/**
 * Pull-mode fleecing as backup tools do it with QEMU 7.2: `fleece` (a
 * qcow2 overlay of the source `disk`, its backing linked to `disk` by
 * blockdev-add) is the target of a blockdev-backup sync=none; it is
 * exported read-only; guest writes to `disk` copy the old data into
 * `fleece` first. The guest writes through a writable export of `disk`
 * added before the backup (the job's filter takes over that export's link,
 * as it takes over a guest device's).
 */
interface FleeceRun {
  log: unknown[];
  guest: RunResult;
  /** qemu-img compare of the fleece export's conversion with the source as it was. */
  pointInTime: RunResult;
  /** qemu-img compare of the export itself with the source as it was. */
  exportVsBefore: RunResult;
  /** The source's new data, read through the guest export. */
  after: RunResult;
  map: RunResult;
  /** The image file, read after the daemon quit, compared with the source as it was (it must differ). */
  fileVsBefore: RunResult;
}

const FLEECE_GUEST = ['write -P 0xee 0 1M', 'write -P 0xdd 3M 64k', 'write -z 1M 64k', 'flush'];
/** The source after the guest's writes. */
const AFTER = ['read -P 0xee 0 1M', 'read -P 0 1M 64k', 'read -P 0x11 1088k 960k', 'read -P 0xdd 3M 64k', 'read -P 0x22 3136k 448k'];

/** qemu-io commands on node `guest` by human-monitor-command, as one qemu-io run's result (a QMP error becomes a line). */
async function hmp(c: QmpClient, cmds: string[]): Promise<RunResult> {
  let out = '';
  for (const cmd of cmds) {
    try {
      out += await c.execute<string>('human-monitor-command', { 'command-line': `qemu-io guest "${cmd}"` });
    } catch (e) {
      out += `QMP error: ${(e as Error).message}\n`;
    }
  }
  return { code: 0, stdout: out.replace(/\r\n/g, '\n'), stderr: '' };
}

/**
 * How the guest writes: `nbd`, through a writable export of `disk`; `nbd-top`, through a writable
 * export of `guest`, a raw node on top of `disk` (the filter takes over guest's link); `hmp`, by
 * HMP qemu-io on `guest` (blockemu only).
 */
type GuestPath = 'nbd' | 'nbd-top' | 'hmp';

async function fleecing(which: Daemon, write: GuestPath = 'nbd'): Promise<FleeceRun> {
  const dir = await tempDir(`fleece-${which}`);
  const src = join(dir, 'src.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', src, '4M');
  await qemuIo('-f', 'qcow2', '-c', 'write -P 0x11 0 2M', '-c', 'write -P 0x22 3M 512k', src);
  await copyFile(src, join(dir, 'before.qcow2'));
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', src, '-F', 'qcow2', join(dir, 'fleece.qcow2'));
  const d = await startExportDaemon(which, {
    dir,
    // `guest` stands for a guest device on top of `disk` (the HMP variant writes through it).
    blockdevs: [`driver=file,node-name=disk-file,filename=${src}`, 'driver=qcow2,node-name=disk,file=disk-file', ...(write === 'nbd' ? [] : ['driver=raw,node-name=guest,file=disk'])],
    nbdServer: true,
  });
  const c: QmpClient = d.client;
  const log: unknown[] = [];
  const step = async (cmd: string, args?: Record<string, unknown>, events = 0) => {
    log.push({ cmd, ...(await outcome(c, dir, cmd, args)) });
    log.push(...normaliseEvents(await takeEvents(c, events, 5000, events > 0 ? 30 : 0), dir));
  };
  let quitEvents: unknown;
  const uri = (n: string) => nbdUri(d.nbdPath, n);
  let guest: RunResult, pointInTime: RunResult, exportVsBefore: RunResult, after: RunResult, map: RunResult;
  try {
    if (write !== 'hmp') await step('block-export-add', { type: 'nbd', id: 'guest', 'node-name': write === 'nbd' ? 'disk' : 'guest', name: 'guest', writable: true });
    await step('blockdev-add', { driver: 'qcow2', 'node-name': 'fleece', file: { driver: 'file', filename: join(dir, 'fleece.qcow2') }, backing: 'disk' });
    await step('blockdev-backup', { 'job-id': 'fl', device: 'disk', target: 'fleece', sync: 'none' }, 4);
    await step('block-export-add', { type: 'nbd', id: 'fe', 'node-name': 'fleece', name: 'fleece' });
    await step('query-block-exports');
    if (write !== 'hmp') {
      guest = await qemuIo('-f', 'raw', ...qio(FLEECE_GUEST), uri('guest'));
    } else {
      guest = await hmp(c, FLEECE_GUEST);
    }
    await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', uri('fleece'), join(dir, 'out.qcow2'));
    pointInTime = await qemuImg('compare', '-f', 'qcow2', '-F', 'qcow2', join(dir, 'out.qcow2'), join(dir, 'before.qcow2'));
    exportVsBefore = await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', uri('fleece'), join(dir, 'before.qcow2'));
    map = await qemuImg('map', '--output=json', uri('fleece'));
    if (write !== 'hmp') {
      after = await qemuIo('-r', '-f', 'raw', ...qio(AFTER), uri('guest'));
    } else {
      after = await hmp(c, AFTER);
    }
    await step('query-block-jobs');
    // The backup tool is done: cancel the job, remove the export and the overlay.
    await step('block-job-cancel', { device: 'fl' }, 4);
    await step('block-export-del', { id: 'fe' }, 1);
    await step('blockdev-del', { 'node-name': 'fleece' });
    await step('query-block-exports');
    await step('query-named-block-nodes', { flat: true });
    log[log.length - 1] = namedNodes(log[log.length - 1]);
  } finally {
    quitEvents = normaliseEvents(await d.quit(), dir);
  }
  log.push({ quit: quitEvents });
  const fileVsBefore = await qemuImg('compare', '-f', 'qcow2', '-F', 'qcow2', src, join(dir, 'before.qcow2'));
  return { log, guest: view(guest, dir), pointInTime: view(pointInTime, dir), exportVsBefore: view(exportVsBefore, dir), after: view(after, dir), map: view(map, dir), fileVsBefore: view(fileVsBefore, dir) };
}

function normaliseEvents(events: Array<{ event: string; data: unknown }>, dir: string): unknown[] {
  return normalise(events, dir) as unknown[];
}

/** query-named-block-nodes reduced to the user-named nodes. */
function namedNodes(entry: unknown): unknown {
  const e = entry as { cmd: string; return?: Array<{ 'node-name': string; drv: string }> };
  if (!e.return) return e;
  return { cmd: e.cmd, return: e.return.filter((n) => !n['node-name'].startsWith('#')).map((n) => `${n['node-name']}:${n.drv}`).sort() };
}

describe.skipIf(!qemu.storageDaemon || !qemu.available)(`fleecing backup (QEMU 7.2 pull mode) through ${OURS}'s NBD export (vs qemu-storage-daemon)`, () => {
  it('the fleece export reads the source as it was before the guest wrote; the source has the new data; cleanup is clean', async () => {
    const theirs = await fleecing('qsd');
    const ours = await fleecing(OURS);
    for (const r of [theirs, ours]) {
      expect.soft(r.pointInTime).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
      expect.soft(r.exportVsBefore).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
      expect.soft(r.after.stdout).not.toMatch(/failed|verification/i);
      expect.soft(r.fileVsBefore.code).toBe(1);
    }
    expect.soft(theirs.log).toContainEqual({ cmd: 'query-block-exports', return: [{ type: 'nbd', id: 'fe', 'node-name': 'fleece', 'shutting-down': false }, { type: 'nbd', id: 'guest', 'node-name': '#block', 'shutting-down': false }] });
    expect.soft(ours).toEqual(theirs);
  });

  it('the same with the guest writing through an export of a node on top of disk', async () => {
    const theirs = await fleecing('qsd', 'nbd-top');
    const ours = await fleecing(OURS, 'nbd-top');
    for (const r of [theirs, ours]) {
      expect.soft(r.pointInTime).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
      expect.soft(r.after.stdout).not.toMatch(/failed|verification/i);
    }
    expect.soft(ours).toEqual(theirs);
  });

  it.skipIf(OURS !== 'blockemu')('blockemu: the same with the guest writing by human-monitor-command through a node on top of disk', async () => {
    // (Not `qemu-io disk`: QEMU's HMP qemu-io puts a new BlockBackend right on the node it names, under the
    // backup's filter, so its writes would not be copied first.)
    const r = await fleecing('blockemu', 'hmp');
    expect.soft(r.guest.stdout).not.toMatch(/failed|error/i);
    expect.soft(r.pointInTime).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    expect.soft(r.exportVsBefore).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    expect.soft(r.after.stdout).not.toMatch(/failed|verification|error/i);
    expect.soft(r.fileVsBefore.code).toBe(1);
    expect.soft(r.log).toContainEqual({ cmd: 'blockdev-del', return: {} });
  });
});

