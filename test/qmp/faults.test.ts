import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type EmbeddedDaemon, startDaemon } from '../../src/embed.js';
import type { QmpClient } from '../../src/qmp/client.js';
import { withTempDir } from '../helpers/qemu.js';

/** An in-process daemon with a raw node d0 over a 1 MiB file, and a client. */
async function withDaemon(run: (c: QmpClient, d: EmbeddedDaemon) => Promise<void>, opts: Parameters<typeof startDaemon>[0] = {}): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, 'd.raw');
    await writeFile(path, new Uint8Array(1 << 20));
    // opts.blockdevs come after d0.
    const d = await startDaemon({ ...opts, blockdevs: [{ driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: path, 'node-name': 'f0' } }, ...(opts.blockdevs ?? [])] });
    try {
      await run(await d.client(), d);
    } finally {
      await d.close();
    }
  });
}

/** A qemu-io command on a node through human-monitor-command; its output. */
const io = (c: QmpClient, cmd: string, node = 'd0') => c.execute<string>('human-monitor-command', { 'command-line': `qemu-io ${node} "${cmd}"` });

const fired = (c: QmpClient) =>
  c
    .takeEvents()
    .filter((e) => e.event === '__org.blockemu_FAULT_FIRED')
    .map((e) => e.data);

describe('__org.blockemu_fault-add and friends', () => {
  it('an nth-write error fails that write only, is announced and listed; query-named-block-nodes does not change', async () => {
    await withDaemon(async (c) => {
      const before = await c.execute('query-named-block-nodes');
      expect(await c.execute('__org.blockemu_fault-add', { 'node-name': 'd0', type: 'error', iotype: 'write', nth: 2, errno: 'ENOSPC' })).toEqual({ id: 'fault0' });
      expect(await c.execute('query-named-block-nodes')).toEqual(before);
      expect(await io(c, 'write 0 4k')).toMatch(/^wrote 4096\/4096/);
      expect(await io(c, 'write 4k 4k')).toBe('write failed: No space left on device\r\n');
      expect(await io(c, 'write 8k 4k')).toMatch(/^wrote 4096\/4096/);
      expect(fired(c)).toEqual([{ id: 'fault0', type: 'error', 'node-name': 'd0', iotype: 'write', offset: 4096, length: 4096, errno: 'ENOSPC', hits: 1 }]);
      expect(await c.execute('__org.blockemu_query-faults')).toEqual([{ id: 'fault0', type: 'error', 'node-name': 'd0', matched: 2, hits: 1, spent: true }]);
      await c.execute('__org.blockemu_fault-remove', { id: 'fault0' });
      expect(await c.execute('__org.blockemu_query-faults')).toEqual([]);
    });
  });

  it('refusals: unknown node, unknown fault, a duplicate id, a bad errno, a release of what is no stall', async () => {
    await withDaemon(async (c) => {
      const refused = (cmd: string, args: Record<string, unknown>) => c.execute(cmd, args).then(() => 'ok', (e: { desc: string }) => e.desc);
      expect(await refused('__org.blockemu_fault-add', { 'node-name': 'nosuch', type: 'stall' })).toBe("Cannot find device='' nor node-name='nosuch'");
      expect(await refused('__org.blockemu_fault-add', { 'node-name': 'd0', type: 'error', errno: 'EWHAT' })).toBe("Parameter 'errno' does not accept value 'EWHAT'");
      expect(await refused('__org.blockemu_fault-add', { 'node-name': 'd0', type: 'latency' })).toBe("Parameter 'ms' is missing");
      expect(await refused('__org.blockemu_fault-add', { 'node-name': 'd0', type: 'error', errno: 'EIO', id: 'x' })).toBe('ok');
      expect(await refused('__org.blockemu_fault-add', { 'node-name': 'f0', type: 'stall', id: 'x' })).toBe("Fault 'x' already exists");
      expect(await refused('__org.blockemu_fault-release', { id: 'x' })).toBe("Fault 'x' is not a stall");
      expect(await refused('__org.blockemu_fault-remove', { id: 'y' })).toBe("Fault 'y' not found");
      expect(await refused('__org.blockemu_qmp-fault-add', { command: 'nosuch', desc: 'd' })).toBe('The command nosuch has not been found');
      expect(await refused('__org.blockemu_qmp-fault-add', { command: '__org.blockemu_fault-remove', desc: 'd' })).toBe('The command __org.blockemu_fault-remove cannot be made to fail');
    });
  });

  it('stall holds writes until __org.blockemu_fault-release; query shows them waiting', async () => {
    await withDaemon(async (c, d) => {
      await c.execute('__org.blockemu_fault-add', { 'node-name': 'f0', type: 'stall', iotype: 'write', id: 'hold' });
      let answered = false;
      const w = io(c, 'write -P 5 0 4k').then((r) => ((answered = true), r));
      // A monitor runs one command of a client at a time: the held write's client waits, another does not.
      const c2 = await d.client();
      const waiting = async () => (await c2.execute<Array<{ waiting?: number }>>('__org.blockemu_query-faults'))[0]!.waiting;
      for (let i = 0; i < 500 && (await waiting()) !== 1; i++) await new Promise((r) => setTimeout(r, 10));
      expect(await c2.execute('__org.blockemu_query-faults')).toEqual([{ id: 'hold', type: 'stall', 'node-name': 'f0', matched: 1, hits: 1, spent: false, waiting: 1 }]);
      expect(await io(c2, 'read -P 0 0 4k')).toMatch(/^read 4096\/4096/);
      expect(answered).toBe(false);
      await c2.execute('__org.blockemu_fault-release', { id: 'hold' });
      expect(await w).toMatch(/^wrote 4096\/4096/);
      expect(await io(c, 'read -P 5 0 4k')).toMatch(/^read 4096\/4096/);
      expect(await c.execute('__org.blockemu_query-faults')).toEqual([{ id: 'hold', type: 'stall', 'node-name': 'f0', matched: 1, hits: 1, spent: true, waiting: 0 }]);
    });
  });

  it.each([
    [
      'a stall on its target',
      (c: QmpClient) => c.execute('__org.blockemu_fault-add', { 'node-name': 't0', type: 'stall', iotype: 'write', id: 'hold' }),
      async (c: QmpClient) => {
        for (let i = 0; i < 500 && !((await c.execute<Array<{ waiting?: number }>>('__org.blockemu_query-faults'))[0]!.waiting! > 0); i++) await new Promise((r) => setTimeout(r, 10));
      },
      (c: QmpClient) => c.execute('__org.blockemu_fault-release', { id: 'hold' }),
    ],
    ['a blkdebug breakpoint under its source', (c: QmpClient) => io(c, 'break read_aio bp', 'dbg'), (c: QmpClient) => io(c, 'wait_break bp', 'dbg'), (c: QmpClient) => io(c, 'remove_break bp', 'dbg')],
  ] as const)('block-job-cancel of a backup held by %s answers at once; the job ends once the request goes on', async (_, hold, held, release) => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 't.raw'), new Uint8Array(1 << 20));
      await writeFile(join(dir, 's.raw'), new Uint8Array(1 << 20).fill(7));
      await withDaemon(
        async (c) => {
          await hold(c);
          await c.execute('blockdev-backup', { 'job-id': 'j', device: 'src', target: 't0', sync: 'full' });
          // The job's request is held when the cancel comes.
          await held(c);
          // Without the fix this never answers (the release below is never sent).
          await c.execute('block-job-cancel', { device: 'j' });
          expect((await c.execute<Array<{ device: string }>>('query-block-jobs')).map((j) => j.device)).toEqual(['j']);
          await release(c);
          const ev = await c.waitForEvent('BLOCK_JOB_CANCELLED');
          expect(ev.data).toMatchObject({ device: 'j', type: 'backup' });
          expect(await c.execute('query-block-jobs')).toEqual([]);
        },
        {
          blockdevs: [
            { driver: 'raw', 'node-name': 't0', file: { driver: 'file', filename: join(dir, 't.raw') } },
            { driver: 'raw', 'node-name': 'src', file: { driver: 'blkdebug', 'node-name': 'dbg', image: { driver: 'file', filename: join(dir, 's.raw') } } },
          ],
        },
      );
    });
  }, 30_000);

  it('a daemon closes with a backup whose read a blkdebug breakpoint holds: the request goes on and the close ends (QEMU would hang)', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 't.raw'), new Uint8Array(1 << 20));
      await writeFile(join(dir, 's.raw'), new Uint8Array(1 << 20).fill(7));
      const d = await startDaemon({
        blockdevs: [
          { driver: 'raw', 'node-name': 't0', file: { driver: 'file', filename: join(dir, 't.raw') } },
          { driver: 'raw', 'node-name': 'src', file: { driver: 'blkdebug', 'node-name': 'dbg', image: { driver: 'file', filename: join(dir, 's.raw') } } },
        ],
      });
      const c = await d.client();
      await io(c, 'break read_aio bp', 'dbg');
      await c.execute('blockdev-backup', { 'job-id': 'j', device: 'src', target: 't0', sync: 'full' });
      await io(c, 'wait_break bp', 'dbg');
      const closed = d.close().then(() => 'closed');
      expect(await Promise.race([closed, new Promise((r) => setTimeout(() => r('hung'), 5000))])).toBe('closed');
    });
  }, 30_000);

  it('latency on the virtual clock: the read takes 250 ms of daemon time, which moves by itself when nothing else runs', async () => {
    await withDaemon(
      async (c) => {
        const t0 = (await c.execute<{ ns: number }>('__org.blockemu_query-clock')).ns;
        await c.execute('__org.blockemu_fault-add', { 'node-name': 'd0', type: 'latency', iotype: 'read', ms: 250, nth: 1 });
        expect(await io(c, 'read 0 512')).toMatch(/^read 512\/512/);
        expect((await c.execute<{ ns: number }>('__org.blockemu_query-clock')).ns - t0).toBe(250_000_000);
        expect(fired(c)).toMatchObject([{ type: 'latency', iotype: 'read', offset: 0, length: 512 }]);
      },
      { clock: 'virtual' },
    );
  });

  it('latency on a backup target on the virtual clock: the job, held only by the latency, does not stop time and completes', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 't.raw'), new Uint8Array(1 << 20));
      await withDaemon(
        async (c) => {
          await io(c, 'write -P 9 0 1M');
          await c.execute('__org.blockemu_fault-add', { 'node-name': 't0', type: 'latency', iotype: 'write', ms: 100 });
          await c.execute('blockdev-backup', { 'job-id': 'j', device: 'd0', target: 't0', sync: 'full' });
          const done = await c.waitForEvent('BLOCK_JOB_COMPLETED');
          expect(done.data).toMatchObject({ device: 'j', offset: 1 << 20, len: 1 << 20 });
          expect(done.data).not.toHaveProperty('error');
          const { ns } = await c.execute<{ ns: number }>('__org.blockemu_query-clock');
          // Nothing but the latency takes virtual time here: whole rounds of 100 ms, at least one.
          expect(ns % 100_000_000).toBe(0);
          expect(ns).toBeGreaterThanOrEqual(100_000_000);
          expect(await io(c, 'read -P 9 0 1M', 't0')).toMatch(/^read 1048576\/1048576/);
        },
        { clock: 'virtual', blockdevs: [{ driver: 'raw', 'node-name': 't0', file: { driver: 'file', filename: join(dir, 't.raw') } }] },
      );
    });
  });

  it('qmp-error: the next call (or count calls, or every one with count 0) answers with the given class and desc', async () => {
    await withDaemon(async (c) => {
      expect(await c.execute('__org.blockemu_qmp-fault-add', { command: 'query-version', class: 'DeviceNotFound', desc: 'no version today' })).toEqual({ id: 'fault0' });
      await expect(c.execute('query-version')).rejects.toMatchObject({ qmpClass: 'DeviceNotFound', desc: 'no version today' });
      await expect(c.execute('query-version')).resolves.toMatchObject({ package: expect.any(String) });
      await c.execute('__org.blockemu_qmp-fault-add', { command: 'query-block-jobs', desc: 'busy', count: 0, id: 'every' });
      for (let i = 0; i < 3; i++) await expect(c.execute('query-block-jobs')).rejects.toMatchObject({ qmpClass: 'GenericError', desc: 'busy' });
      // Arguments are checked first: a call the schema refuses is refused as ever, and not counted.
      await expect(c.execute('query-block-jobs', { x: 1 })).rejects.toMatchObject({ desc: "Parameter 'x' is unexpected" });
      expect(await c.execute('__org.blockemu_query-faults')).toEqual([
        { id: 'fault0', type: 'qmp-error', command: 'query-version', matched: 2, hits: 1, spent: true },
        { id: 'every', type: 'qmp-error', command: 'query-block-jobs', matched: 3, hits: 3, spent: false },
      ]);
      expect(fired(c)).toEqual([
        { id: 'fault0', type: 'qmp-error', command: 'query-version', hits: 1 },
        { id: 'every', type: 'qmp-error', command: 'query-block-jobs', hits: 1 },
        { id: 'every', type: 'qmp-error', command: 'query-block-jobs', hits: 2 },
        { id: 'every', type: 'qmp-error', command: 'query-block-jobs', hits: 3 },
      ]);
      await c.execute('__org.blockemu_fault-remove', { id: 'every' });
      expect(await c.execute('query-block-jobs')).toEqual([]);
    });
  });

  it('startDaemon({ faults }) arms them as fault-add does, and refuses a bad one', async () => {
    await withDaemon(
      async (c) => {
        expect(await io(c, 'read 64k 512')).toBe('read failed: Input/output error\r\n');
        expect(await io(c, 'read 0 512')).toMatch(/^read 512\/512/);
        expect(await c.execute('__org.blockemu_query-faults')).toMatchObject([{ id: 'bad-sector', 'node-name': 'f0', hits: 1, spent: false }]);
      },
      { faults: [{ 'node-name': 'f0', id: 'bad-sector', type: 'error', iotype: 'read', offset: 65536, length: 512, errno: 'EIO' }] },
    );
    await expect(startDaemon({ faults: [{ 'node-name': 'nosuch', type: 'stall' }] })).rejects.toThrow("Cannot find device='' nor node-name='nosuch'");
  });
});
