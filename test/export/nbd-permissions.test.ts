/**
 * The one permission pairing blockemu checks, from both sides: an export
 * forbids resizing its node and a writable qcow2 node needs to grow its
 * file, so an export of the file under a writable qcow2 is refused, and so
 * is a writable qcow2 added over an exported file; read-only qcow2 and raw
 * nodes over it are fine. The same session on both daemons.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, OURS, playQmp } from '../helpers/export-daemon.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

async function session(which: Daemon): Promise<unknown[]> {
  return withTempDir(async (dir) => {
    expect((await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'a.qcow2'), '1M')).code).toBe(0);
    expect((await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'b.qcow2'), '1M')).code).toBe(0);
    const blockdevs = [`driver=file,node-name=fa,filename=${join(dir, 'a.qcow2')}`, 'driver=qcow2,node-name=qa,file=fa', `driver=file,node-name=fb,filename=${join(dir, 'b.qcow2')}`];
    return playQmp(which, { dir, blockdevs, nbdServer: true }, [
      ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'fa' }],
      ['block-export-add', { type: 'nbd', id: 'e1', 'node-name': 'fb' }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'qb', file: 'fb' }],
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'qb-ro', file: 'fb', 'read-only': true }],
      ['blockdev-add', { driver: 'raw', 'node-name': 'rb', file: 'fb' }],
      ['query-block-exports'],
    ]);
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('exports and writable qcow2 nodes on the same file', () => {
  it('refused whichever comes second, in QEMU words; read-only and raw parents are fine', async () => {
    const theirs = await session('qsd');
    expect(JSON.stringify(theirs[0])).toContain('Permission conflict');
    expect(JSON.stringify(theirs[2])).toContain('Permission conflict');
    expect(await session(OURS)).toEqual(theirs);
  }, 30_000);
});
