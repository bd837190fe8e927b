/**
 * Where block-export-add looks for a bitmap named by a string: on the
 * exported node, then down through filters (blkdebug) and backing links,
 * not into a format node's file (bdrv_filter_or_cow_bs). The same session
 * through qemu-storage-daemon and blockemu must answer alike.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, OURS, playQmp } from '../helpers/export-daemon.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

async function session(which: Daemon): Promise<unknown[]> {
  return withTempDir(async (dir) => {
    expect((await qemuImg('create', '-q', '-f', 'raw', join(dir, 'r.raw'), '1M')).code).toBe(0);
    expect((await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'q.qcow2'), '1M')).code).toBe(0);
    const blockdevs = [
      `driver=file,node-name=rf,filename=${join(dir, 'r.raw')}`,
      'driver=raw,node-name=r,file=rf',
      `driver=file,node-name=qf,filename=${join(dir, 'q.qcow2')}`,
      'driver=qcow2,node-name=q,file=qf',
      'driver=blkdebug,node-name=dbg,image=q',
    ];
    return playQmp(which, { dir, blockdevs, nbdServer: true }, [
      ['block-dirty-bitmap-add', { node: 'rf', name: 'b' }],
      ['block-dirty-bitmap-add', { node: 'q', name: 'c', disabled: true }],
      ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'r', bitmaps: ['b'] }],
      ['block-export-add', { type: 'nbd', id: 'e1', 'node-name': 'dbg', bitmaps: ['c'] }],
      ['block-export-add', { type: 'nbd', id: 'e2', 'node-name': 'r', name: 'by-node', bitmaps: [{ node: 'rf', name: 'b' }] }],
      ['query-block-exports'],
    ]);
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('block-export-add: which nodes a bitmap name is looked up on', () => {
  it('the node and what it filters or is backed by, not the file of a format node', async () => {
    const theirs = await session('qsd');
    expect(theirs[2]).toEqual({ error: { class: 'GenericError', desc: "Bitmap 'b' is not found" } });
    expect(theirs[3]).toEqual({ return: {} });
    expect(await session(OURS)).toEqual(theirs);
  }, 30_000);
});
