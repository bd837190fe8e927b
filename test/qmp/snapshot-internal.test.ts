/**
 * blockdev-snapshot-internal-sync (as a command and as a transaction
 * action) and blockdev-snapshot-delete-internal-sync, on
 * qemu-storage-daemon and on blockemu: the schema entry, every refusal,
 * the snapshots taken, listed and deleted must be the same; and snapshots
 * taken while an NBD client writes leave a consistent image.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { QmpClient } from '../../src/qmp/client.js';
import { type ExportDaemon, startExportDaemon } from '../helpers/export-daemon.js';
import { qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';

const outcome = (c: QmpClient, cmd: string, args: Record<string, unknown>) =>
  c.execute(cmd, args).then(
    (r) => ({ return: r }),
    (e: { qmpClass: string; desc: string }) => ({ error: { class: e.qmpClass, desc: e.desc } }),
  );

const CASES: Array<Record<string, unknown>> = [
  { device: 'n0', name: 's1' },
  { device: 'nosuch', name: 's1' },
  { device: 'n0' },
  { device: 'n0', name: 's1', x: 1 },
  { device: 'raw0', name: 's1' },
  { device: 'f0', name: 's1' },
  { device: 'ro', name: 's1' },
  { device: 'q0', name: '' },
];

/** The same refusals through the command and through a transaction of one action; then the schema entry with its argument type. */
async function play(d: ExportDaemon): Promise<unknown[]> {
  const c = d.client;
  const out: unknown[] = [];
  for (const args of CASES) {
    out.push(await outcome(c, 'blockdev-snapshot-internal-sync', args));
    out.push(await outcome(c, 'transaction', { actions: [{ type: 'blockdev-snapshot-internal-sync', data: args }] }));
  }
  // Nodes that keep no snapshots cannot list them, so nothing can be deleted there.
  for (const device of ['raw0', 'n0']) out.push(await outcome(c, 'blockdev-snapshot-delete-internal-sync', { device, name: 's1' }));
  const schema = await c.execute<Array<{ name: string; 'arg-type'?: string; 'meta-type': string; members?: unknown }>>('query-qmp-schema');
  const cmd = schema.find((e) => e.name === 'blockdev-snapshot-internal-sync');
  out.push(cmd?.['meta-type'], schema.find((e) => e.name === cmd?.['arg-type'])?.members);
  out.push((await c.execute<Array<{ name: string }>>('query-commands')).some((x) => x.name === 'blockdev-snapshot-internal-sync'));
  return out;
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('blockdev-snapshot-internal-sync', () => {
  it('is in the schema and refuses as qemu-storage-daemon does, as a command and in a transaction', async () => {
    await withTempDir(async (root) => {
      const images = join(root, 'img');
      await mkdir(images);
      for (const f of ['q.qcow2', 'ro.qcow2']) await qemuImg('create', '-q', '-f', 'qcow2', join(images, f), '1M');
      await qemuImg('create', '-q', '-f', 'raw', join(images, 'r.raw'), '1M');
      const blockdevs = [
        'driver=null-co,node-name=n0',
        `driver=qcow2,node-name=q0,file.driver=file,file.filename=${join(images, 'q.qcow2')}`,
        `driver=qcow2,node-name=ro,read-only=on,file.driver=file,file.filename=${join(images, 'ro.qcow2')}`,
        `driver=file,node-name=f0,filename=${join(images, 'r.raw')}`,
        'driver=raw,node-name=raw0,file=f0',
      ];
      const results: unknown[][] = [];
      for (const which of ['qsd', 'blockemu'] as const) {
        const dir = join(root, which);
        await mkdir(dir);
        const d = await startExportDaemon(which, { dir, blockdevs });
        try {
          results.push(await play(d));
        } finally {
          await d.quit();
        }
      }
      const [theirs, ours] = results;
      expect(ours).toEqual(theirs);
      expect(ours![0]).toEqual({ error: { class: 'GenericError', desc: "Block format 'null-co' used by device 'n0' does not support internal snapshots" } });
    });
  }, 60_000);

  it('takes, lists and deletes snapshots as qemu-storage-daemon does (transaction abort included); qemu-img reads the result', async () => {
    const now = Math.floor(Date.now() / 1000);
    /** Dates and VM clocks vary: checked to be now (qemu-storage-daemon's VM clock is the real one), then left out. */
    const timeless = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(timeless);
      if (v === null || typeof v !== 'object') return v;
      const o = { ...(v as Record<string, unknown>) };
      if ('date-sec' in o) {
        expect(Math.abs((o['date-sec'] as number) - now)).toBeLessThan(120);
        expect(Math.abs((o['vm-clock-sec'] as number) - (o['date-sec'] as number))).toBeLessThan(2);
        for (const k of ['date-sec', 'date-nsec', 'vm-clock-sec', 'vm-clock-nsec']) delete o[k];
      }
      for (const [k, x] of Object.entries(o)) o[k] = timeless(x);
      return o;
    };
    await withTempDir(async (root) => {
      const results: unknown[][] = [];
      for (const which of ['qsd', 'blockemu'] as const) {
        const dir = join(root, which);
        await mkdir(dir);
        const img = join(dir, 'q.qcow2');
        await qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
        const d = await startExportDaemon(which, { dir, blockdevs: [`driver=file,node-name=f,filename=${img}`, 'driver=qcow2,node-name=q0,file=f'] });
        const out: unknown[] = [];
        const step = async (cmd: string, args: Record<string, unknown>) => out.push(cmd, args, timeless(await outcome(d.client, cmd, args)));
        try {
          await step('blockdev-snapshot-internal-sync', { device: 'q0', name: 's1' });
          await step('blockdev-snapshot-internal-sync', { device: 'q0', name: 's1' });
          await step('blockdev-snapshot-internal-sync', { device: 'f', name: 's2' });
          await step('blockdev-snapshot-delete-internal-sync', { device: 'q0' });
          await step('blockdev-snapshot-delete-internal-sync', { device: 'q0', name: 'nope' });
          await step('blockdev-snapshot-delete-internal-sync', { device: 'q0', id: '7' });
          await step('blockdev-snapshot-delete-internal-sync', { device: 'q0', id: '1', name: 'x' });
          await step('blockdev-snapshot-delete-internal-sync', { device: 'f', name: 's1' });
          await step('blockdev-snapshot-delete-internal-sync', { device: 'nope', name: 's1' });
          await step('blockdev-snapshot-internal-sync', { device: 'q0', name: 's2' });
          await step('blockdev-snapshot-internal-sync', { device: 'q0', name: 's3' });
          // A transaction that fails after taking one: the snapshot goes again.
          await step('transaction', { actions: [{ type: 'blockdev-snapshot-internal-sync', data: { device: 'q0', name: 't1' } }, { type: 'abort', data: {} }] });
          await step('transaction', { actions: [{ type: 'blockdev-snapshot-internal-sync', data: { device: 'q0', name: 't2' } }] });
          const nodes = await d.client.execute<Array<{ 'node-name': string; image: { snapshots?: unknown } }>>('query-named-block-nodes', { flat: true });
          out.push(timeless(nodes.find((n) => n['node-name'] === 'q0')!.image.snapshots));
          await step('blockdev-snapshot-delete-internal-sync', { device: 'q0', name: 's1' });
          await step('blockdev-snapshot-delete-internal-sync', { device: 'q0', id: '3' });
          await step('blockdev-snapshot-delete-internal-sync', { device: 'q0', id: '3' });
        } finally {
          await d.quit();
        }
        const check = await qemuImg('check', img);
        const list = await qemuImg('snapshot', '-l', img);
        out.push(check.code, list.stdout.split('\n').slice(2).map((l) => l.split(/\s+/)[1]));
        results.push(out);
      }
      const [theirs, ours] = results;
      expect(ours).toEqual(theirs);
      expect(ours!.at(-1)).toEqual(['s2', 't2', undefined]);
    });
  }, 60_000);

  it('takes snapshots while an NBD client writes: the image stays consistent, every write and every snapshot reads back', async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'q.qcow2');
      await qemuImg('create', '-q', '-f', 'qcow2', img, '8M');
      const d = await startExportDaemon('blockemu', {
        dir,
        blockdevs: [`driver=file,node-name=f,filename=${img}`, 'driver=qcow2,node-name=q0,file=f'],
        nbdServer: true,
        exports: ['type=nbd,id=e0,node-name=q0,name=q0,writable=on'],
      });
      const writes = Array.from({ length: 96 }, (_, i) => `aio_write -q -P ${(i % 250) + 1} ${(i % 48) * 128 + (i < 48 ? 0 : 64)}k 64k`);
      const client = run('qemu-io', ['-f', 'raw', ...writes.flatMap((w) => ['-c', w]), '-c', 'aio_flush', `nbd+unix:///q0?socket=${join(dir, 'nbd.sock')}`]);
      const taken: string[] = [];
      try {
        for (let i = 0; i < 6; i++) {
          await d.client.execute('blockdev-snapshot-internal-sync', { device: 'q0', name: `s${i}` });
          taken.push(`s${i}`);
        }
        await d.client.execute('blockdev-snapshot-delete-internal-sync', { device: 'q0', name: 's2' });
        const r = await client;
        expect(r.code, r.stderr).toBe(0);
      } finally {
        await d.quit();
      }
      const check = await qemuImg('check', img);
      expect(check.stdout).toContain('No errors were found on the image.');
      expect(check.stdout).not.toContain('leaked');
      const reads = writes.map((w) => w.replace('aio_write -q', 'read -q'));
      const read = await run('qemu-io', ['-f', 'qcow2', ...reads.flatMap((c) => ['-c', c]), img]);
      expect(read.stdout + read.stderr).toBe('');
      // Each snapshot is a whole image of its own.
      for (const sn of taken.filter((n) => n !== 's2')) expect((await qemuImg('convert', '-l', sn, '-O', 'raw', img, join(dir, `${sn}.raw`))).code).toBe(0);
    });
  }, 60_000);
});
