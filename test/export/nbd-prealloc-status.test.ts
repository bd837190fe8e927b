/**
 * NBD block status of a qcow2 image whose metadata was preallocated: its
 * data clusters are holes in the host file, so the server says they read
 * as zeroes (QEMU's BDRV_BLOCK_RECURSE into file-posix's SEEK_DATA /
 * SEEK_HOLE), and a client such as `qemu-img map` or a backup tool that
 * skips zeroes sees only what the guest wrote. The same map through
 * blockemu's export as through qemu-storage-daemon's, and after writes
 * made through the export.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nbdUri, OURS, startExportDaemon, type Daemon } from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

async function maps(which: Daemon): Promise<string[]> {
  return withTempDir(async (dir) => {
    const img = join(dir, 'disk.qcow2');
    expect((await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', img, '32M')).code).toBe(0);
    expect((await qemuIo('-f', 'qcow2', '-c', 'write -P 5 1M 128k', '-c', 'write -P 0 4M 64k', img)).code).toBe(0);
    const d = await startExportDaemon(which, {
      dir,
      blockdevs: [`driver=file,node-name=disk-file,filename=${img}`, 'driver=qcow2,node-name=disk,file=disk-file'],
      nbdServer: true,
      exports: ['type=nbd,id=e0,node-name=disk,name=exp,writable=on'],
    });
    try {
      const uri = nbdUri(d.nbdPath, 'exp');
      const map = async () => (await qemuImg('map', '--output=json', '-f', 'raw', uri)).stdout;
      const out = [await map()];
      // A write through the export fills a hole of the file: data from then on.
      expect((await qemuIo('-f', 'raw', '-c', 'write -P 7 8M 64k', uri)).code).toBe(0);
      out.push(await map());
      return out;
    } finally {
      await d.quit();
    }
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('NBD block status of a metadata-preallocated qcow2 image', () => {
  it('says zero where the file has holes under the data clusters, as qemu-storage-daemon does', async () => {
    const theirs = await maps('qsd');
    const ours = await maps(OURS);
    // Three runs of data (the pattern, the written zeroes, the later write) among zeroes: the holes were found.
    expect(theirs[1]!.match(/"zero": false, "data": true/g)).toHaveLength(3);
    expect(ours).toEqual(theirs);
  });
});
