/**
 * A node that cannot flush when it closes (a qcow2 target on blkdebug
 * failing every write once a data write was tried) beside a healthy qcow2
 * node with a persistent bitmap: on qemu-storage-daemon and on blockemu,
 * blockdev-del and quit must answer alike, print QEMU's lines, leave
 * nothing behind and store the healthy node's bitmap. The embedded daemon
 * must close the same way, resolving, as often as it is asked.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/embed.js';
import { QmpClient } from '../../src/qmp/client.js';
import { BLOCKEMU, qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';
import { connectSoon } from '../helpers/connect-soon.js';

const exists = (p: string) => access(p).then(() => true, () => false);

async function images(dir: string): Promise<void> {
  await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'h.qcow2'), '16M');
  await qemuIo('-c', 'write -P 1 0 1M', join(dir, 'h.qcow2'));
  await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 't.qcow2'), '16M');
}

const healthy = (dir: string) => ({ driver: 'qcow2', 'node-name': 'h', file: { driver: 'file', filename: join(dir, 'h.qcow2') } });
const failing = (dir: string) => ({
  driver: 'qcow2',
  'node-name': 'tgt',
  file: { driver: 'blkdebug', 'inject-error': [{ event: 'write_aio' }], image: { driver: 'file', filename: join(dir, 't.qcow2') } },
});

/** A failed backup into the target leaves its caches dirty; then each bitmap is added and the session ends by `end`. */
async function session(c: QmpClient, bitmapOnTarget: boolean): Promise<unknown[]> {
  const out: unknown[] = [];
  const ex = async (cmd: string, args?: Record<string, unknown>) => out.push(await c.execute(cmd, args).catch((e: Error) => ({ error: e.message })));
  await ex('block-dirty-bitmap-add', { node: 'h', name: 'b0', persistent: true });
  if (bitmapOnTarget) await ex('block-dirty-bitmap-add', { node: 'tgt', name: 'b1', persistent: true });
  await ex('blockdev-backup', { device: 'h', target: 'tgt', sync: 'full', 'job-id': 'j' });
  await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['status'] === 'null', 10_000);
  return out;
}

interface Outcome {
  replies: unknown[];
  status: number | null;
  stderr: string;
  pidfileLeft: boolean;
  socketLeft: boolean;
  bitmaps: unknown;
  checks: number[];
}

async function playCli(which: 'qsd' | 'blockemu', dir: string, opts: { del: boolean; bitmapOnTarget: boolean }): Promise<Outcome> {
  const sock = join(dir, 'qmp.sock');
  const pid = join(dir, 'd.pid');
  const args = [
    '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m', '--pidfile', pid,
    '--blockdev', JSON.stringify(healthy(dir)), '--blockdev', JSON.stringify(failing(dir)),
  ];
  const proc: ChildProcess =
    which === 'qsd'
      ? spawn('qemu-storage-daemon', args, { stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(process.execPath, [BLOCKEMU, 'daemon', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const c = await connectSoon(sock);
  const replies = await session(c, opts.bitmapOnTarget);
  if (opts.del) {
    replies.push(await c.execute('blockdev-del', { 'node-name': 'tgt' }).catch((e: Error) => ({ error: e.message })));
    const names = (await c.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true })).map((n) => n['node-name']);
    replies.push(names.includes('tgt'));
  }
  replies.push(await c.execute('quit'));
  const status = await exited;
  await c.close();
  const info = JSON.parse((await qemuImg('info', '--output=json', join(dir, 'h.qcow2'))).stdout) as { 'format-specific': { data: { bitmaps?: unknown } } };
  const checks = [(await qemuImg('check', join(dir, 'h.qcow2'))).code, (await qemuImg('check', join(dir, 't.qcow2'))).code];
  return {
    replies,
    status,
    // Our program name stands where QEMU's does; blockemu's structured log (the job's I/O error at warn) is its own.
    stderr: stderr
      .split(/(?<=\n)/)
      .filter((l) => !l.startsWith('{"level"'))
      .join('')
      .replaceAll('blockemu daemon: ', 'qemu-storage-daemon: '),
    pidfileLeft: await exists(pid),
    socketLeft: await exists(sock),
    bitmaps: info['format-specific'].data.bitmaps,
    checks,
  };
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('a node that cannot flush when it closes', () => {
  for (const del of [true, false]) {
    for (const bitmapOnTarget of [false, true]) {
      it(`${del ? 'blockdev-del, then quit' : 'quit'}${bitmapOnTarget ? ', with a bitmap on the failing node' : ''}: as qemu-storage-daemon`, async () => {
        const ours = await withTempDir(async (dir) => (await images(dir), playCli('blockemu', dir, { del, bitmapOnTarget })));
        const theirs = await withTempDir(async (dir) => (await images(dir), playCli('qsd', dir, { del, bitmapOnTarget })));
        expect(ours).toEqual(theirs);
        // What QEMU shows, spelled out: blockdev-del succeeds without a prefix (inside a command), quit's lines carry it.
        const lines = ['Failed to flush the L2 table cache: Input/output error', 'Failed to flush the refcount block cache: Input/output error'];
        if (bitmapOnTarget) lines.unshift("Lost persistent bitmaps during inactivation of node 'tgt': Failed to write bitmap 'b1' to file: Input/output error");
        expect(ours.stderr).toBe(lines.map((l) => `${del ? '' : 'qemu-storage-daemon: '}${l}\n`).join(''));
        expect(ours).toMatchObject({ status: 0, pidfileLeft: false, socketLeft: false, bitmaps: [{ name: 'b0', flags: ['auto'] }], checks: [0, 0] });
        if (del) expect(ours.replies.slice(-3)).toEqual([{}, false, {}]);
      }, 60_000);
    }
  }

  it('embedded: close() resolves (twice), reports the lines, stores the bitmap and leaves no socket directory nor open file', async () => {
    await withTempDir(async (dir) => {
      await images(dir);
      const lines: string[] = [];
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      try {
        const d = await startDaemon({ blockdevs: [healthy(dir), failing(dir)], onErrorReport: (m) => lines.push(m) });
        await session(await d.client(), false);
        await expect(d.close()).resolves.toBeUndefined();
        await expect(d.close()).resolves.toBeUndefined();
        expect(await exists(dirname(d.socketPath))).toBe(false);
        expect(lines).toEqual(['Failed to flush the L2 table cache: Input/output error', 'Failed to flush the refcount block cache: Input/output error']);
        // A file left open would be closed by the garbage collector, with a warning.
        globalThis.gc?.();
        await sleep(50);
        expect(warnings.filter((w) => /file descriptor/i.test(w))).toEqual([]);
      } finally {
        process.off('warning', onWarning);
      }
      const info = JSON.parse((await qemuImg('info', '--output=json', join(dir, 'h.qcow2'))).stdout) as { 'format-specific': { data: { bitmaps?: unknown } } };
      expect(info['format-specific'].data.bitmaps).toEqual([{ name: 'b0', flags: ['auto'], granularity: 65536 }]);
      expect((await qemuImg('check', join(dir, 't.qcow2'))).code).toBe(0);
    });
  }, 60_000);
});
