/**
 * Fault injection through an NBD export: a blkdebug node under the
 * exported node fails reads with EIO at one place of the host file (and,
 * for raw, writes with ENOSPC at another); QEMU's own client (qemu-io over
 * nbd+unix) sees the same errors, and the same successes around them, from
 * blockemu as from qemu-storage-daemon. Each command is its own qemu-io
 * run: qemu-storage-daemon drops a client whose structured read fails
 * (blockemu answers with an error chunk and keeps it), so what follows an
 * error is only comparable on a new connection. The daemon serves on.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nbdUri, OURS, startExportDaemon, type Daemon } from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

/** qemu-io's output without its timing lines. */
const lines = (out: string) => out.split('\n').filter((l) => !/ops\/sec|^\s*$/.test(l));

async function session(which: Daemon, format: 'raw' | 'qcow2'): Promise<string[]> {
  return withTempDir(async (dir) => {
    const img = join(dir, `disk.${format}`);
    expect((await qemuImg('create', '-q', '-f', format, img, '4M')).code).toBe(0);
    expect((await qemuIo('-f', format, '-c', 'write -P 0x11 0 1M', img)).code).toBe(0);
    // Where guest offset 512 KiB lies in the host file (qcow2 puts its data after its metadata).
    const map = JSON.parse((await qemuImg('map', '--output=json', '-f', format, img)).stdout) as Array<{ start: number; length: number; offset?: number }>;
    const m = map.find((e) => e.start <= 512 * 1024 && 512 * 1024 < e.start + e.length && e.offset !== undefined)!;
    const hostSector = (m.offset! + 512 * 1024 - m.start) / 512;
    // Reads of that sector fail with EIO; for raw, writes at 2 MiB with ENOSPC (a qcow2 allocates where its allocator likes).
    const dbg = [
      'driver=blkdebug,node-name=dbg,image=disk-file',
      `inject-error.0.event=read_aio,inject-error.0.iotype=read,inject-error.0.errno=5,inject-error.0.sector=${hostSector}`,
      ...(format === 'raw' ? ['inject-error.1.event=write_aio,inject-error.1.iotype=write,inject-error.1.errno=28,inject-error.1.sector=4096'] : []),
    ].join(',');
    const d = await startExportDaemon(which, {
      dir,
      blockdevs: [`driver=file,node-name=disk-file,filename=${img}`, dbg, `driver=${format},node-name=disk,file=dbg`],
      nbdServer: true,
      exports: ['type=nbd,id=e0,node-name=disk,name=exp,writable=on'],
    });
    try {
      const uri = nbdUri(d.nbdPath, 'exp');
      const out: string[] = [];
      for (const cmd of ['read -P 0x11 0 64k', 'read 512k 4k', 'read -P 0x11 768k 4k', 'write -P 0x22 1M 64k', 'write -P 0x33 2M 4k', 'read -P 0x22 1M 64k', 'write -z 3M 64k', 'read -P 0 3M 64k', 'flush']) {
        const r = await qemuIo('-f', 'raw', '-c', cmd, uri);
        out.push(`${cmd}: exit ${r.code}`, ...lines(r.stdout), ...lines(r.stderr));
      }
      // Still serving.
      expect(await d.client.execute('query-block-exports')).toHaveLength(1);
      return out;
    } finally {
      await d.quit();
    }
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('NBD export over a blkdebug node: I/O errors reach the client as in QEMU', () => {
  for (const format of ['raw', 'qcow2'] as const) {
    it(`${format}: EIO on read${format === 'raw' ? ', ENOSPC on write' : ''}, the same qemu-io output as through qemu-storage-daemon`, async () => {
      const theirs = await session('qsd', format);
      const ours = await session(OURS, format);
      expect(theirs.join('\n')).toMatch(/Input\/output error/);
      if (format === 'raw') expect(theirs.join('\n')).toMatch(/No space left on device/);
      expect(ours).toEqual(theirs);
    }, 60_000);
  }

  it('a failed read ends its reply with an error and the client stays connected (qemu-storage-daemon drops it)', async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'disk.raw');
      expect((await qemuImg('create', '-q', '-f', 'raw', img, '4M')).code).toBe(0);
      const d = await startExportDaemon('blockemu', {
        dir,
        blockdevs: [
          `driver=file,node-name=disk-file,filename=${img}`,
          'driver=blkdebug,node-name=dbg,image=disk-file,inject-error.0.event=read_aio,inject-error.0.iotype=read,inject-error.0.errno=5,inject-error.0.sector=1024',
          'driver=raw,node-name=disk,file=dbg',
        ],
        nbdServer: true,
        exports: ['type=nbd,id=e0,node-name=disk,name=exp,writable=on'],
      });
      try {
        const r = await qemuIo('-f', 'raw', '-c', 'write -P 0x44 0 1M', '-c', 'read 512k 4k', '-c', 'read -P 0x44 768k 4k', nbdUri(d.nbdPath, 'exp'));
        expect(lines(r.stdout)).toEqual(['wrote 1048576/1048576 bytes at offset 0', 'read failed: Input/output error', 'read 4096/4096 bytes at offset 786432']);
      } finally {
        await d.quit();
      }
    });
  });
});
