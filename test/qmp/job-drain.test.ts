/**
 * What commands that drain the graph show of a running job, played on
 * qemu-storage-daemon and on blockemu: blockdev-add of a node whose `file`
 * is the job's node or a node below it (QEMU's probing BlockBackend on
 * that file comes and goes: two paused/running pairs), a node over one
 * of the job's nodes by another child name (none), blockdev-del (none),
 * and an export of such a node added (none) and deleted (two pairs).
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { qemu, qemuImg } from '../helpers/qemu.js';
import { compareSessions, file, type Step } from '../helpers/qmp-session.js';

async function images(dir: string): Promise<void> {
  for (const name of ['src.qcow2', 'tmp.qcow2', 'top.qcow2']) expect((await qemuImg('create', '-q', '-f', 'qcow2', join(dir, name), '4M')).stderr).toBe('');
}

const exportGone = (id: string): Step => ({
  look: async (c) => {
    for (let i = 0; i < 200; i++) {
      if (!(await c.execute<Array<{ id: string }>>('query-block-exports')).some((e) => e.id === id)) return id;
      await sleep(10);
    }
    throw new Error(`export ${id} is still there`);
  },
});

describe.skipIf(!qemu.available || !qemu.storageDaemon)('drains seen by a running job, as qemu-storage-daemon shows them', () => {
  it('blockdev-add naming a node at or below the job as file, blockdev-del, export add and delete', async () => {
    const log = await compareSessions(images, [
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'src', file: file('src.qcow2', 'src-file') }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'tmp', file: file('tmp.qcow2') }],
      ['blockdev-backup', { 'job-id': 'j', device: 'src', target: 'tmp', sync: 'none', 'filter-node-name': 'bf' }],
      // The job's filter, its target, the source below the filter, the source's file: each drained twice.
      ['blockdev-add', { driver: 'raw', 'node-name': 'r1', file: 'bf' }],
      ['blockdev-del', { 'node-name': 'r1' }],
      ['blockdev-add', { driver: 'raw', 'node-name': 'r2', file: 'tmp' }],
      ['blockdev-add', { driver: 'raw', 'node-name': 'r3', file: 'src' }],
      ['blockdev-add', { driver: 'snapshot-access', 'node-name': 'a1', file: 'bf' }],
      // A backing child is not probed; an inline file is new.
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', file: file('top.qcow2'), backing: 'r3' }],
      ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }],
      ['block-export-add', { type: 'nbd', id: 'e1', 'node-name': 'tmp' }],
      ['block-export-del', { id: 'e1' }],
      exportGone('e1'),
      ['block-export-add', { type: 'nbd', id: 'e2', 'node-name': 'top' }],
      ['block-export-del', { id: 'e2' }],
      exportGone('e2'),
      ['block-job-cancel', { device: 'j' }],
      { waitJob: 'j' },
    ]);
    const events = (log[log.length - 1] as { events: Array<{ event: string; data: { status?: string } }> }).events;
    expect(events.filter((e) => e.data.status === 'paused').length).toBeGreaterThan(8);
  }, 60_000);
});
