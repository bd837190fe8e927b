/**
 * blockdev-snapshot-internal-sync, as a command and as a transaction
 * action, on qemu-storage-daemon and on blockemu: the schema entry and
 * every refusal QEMU makes before it would write a snapshot must be the
 * same; where QEMU would write one, blockemu refuses with its own words.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { QmpClient } from '../../src/qmp/client.js';
import { type ExportDaemon, startExportDaemon } from '../helpers/export-daemon.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

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

  it('where QEMU would take the snapshot, blockemu refuses with the message of a transaction', async () => {
    await withTempDir(async (root) => {
      await qemuImg('create', '-q', '-f', 'qcow2', join(root, 'q.qcow2'), '1M');
      const d = await startExportDaemon('blockemu', { dir: root, blockdevs: [`driver=qcow2,node-name=q0,file.driver=file,file.filename=${join(root, 'q.qcow2')}`] });
      try {
        const refusal = { error: { class: 'GenericError', desc: 'Internal snapshots are not supported by blockemu yet' } };
        expect(await outcome(d.client, 'blockdev-snapshot-internal-sync', { device: 'q0', name: 's1' })).toEqual(refusal);
        expect(await outcome(d.client, 'transaction', { actions: [{ type: 'blockdev-snapshot-internal-sync', data: { device: 'q0', name: 's1' } }] })).toEqual(refusal);
      } finally {
        await d.quit();
      }
    });
  }, 60_000);
});
