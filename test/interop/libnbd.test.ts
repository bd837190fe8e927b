/**
 * A client that is not QEMU's: libnbd's nbdinfo and nbdcopy (Debian's
 * libnbd-bin) against the same exports served by qemu-storage-daemon and
 * by blockemu. nbdinfo --list and --map (base:allocation,
 * qemu:allocation-depth, a dirty bitmap) must print the same; nbdcopy
 * must copy an export out and into a writable export byte for byte.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, OURS, startExportDaemon } from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo, run, withTempDir } from '../helpers/qemu.js';

const libnbd = (() => {
  const ok = spawnSync('sh', ['-c', 'command -v nbdinfo && command -v nbdcopy'], { stdio: 'ignore' }).status === 0;
  if (!ok) {
    const msg = "libnbd's tools are missing (nbdinfo, nbdcopy): install libnbd-bin to run the libnbd interop tests";
    if (process.env.CI === 'true') throw new Error(`${msg} — CI=true, so this is a failure, not a skip`);
    console.warn(`SKIP: ${msg}`);
  }
  return ok;
})();

const uri = (sock: string, name: string) => `nbd+unix:///${name}?socket=${sock}`;

async function outputs(which: Daemon): Promise<string[]> {
  return withTempDir(async (dir) => {
    const img = join(dir, 'disk.qcow2');
    expect((await qemuImg('create', '-q', '-f', 'qcow2', img, '8M')).code).toBe(0);
    expect((await qemuIo('-f', 'qcow2', '-c', 'write -P 0x11 0 1M', '-c', 'write -z 4M 1M', '-c', 'write -P 0x22 6M 64k', img)).code).toBe(0);
    const d = await startExportDaemon(which, {
      dir,
      blockdevs: [`driver=file,node-name=f,filename=${img}`, 'driver=qcow2,node-name=disk,file=f'],
      nbdServer: true,
      exports: ['type=nbd,id=e0,node-name=disk,name=exp,writable=on,allocation-depth=on,description=the disk'],
    });
    const out: string[] = [];
    const say = async (cmd: string, args: string[]) => {
      const r = await run(cmd, args);
      out.push(`$ ${cmd} ${args.join(' ').replaceAll(dir, 'DIR')}`, `exit ${r.code}`, ...(r.stdout + r.stderr).replaceAll(dir, 'DIR').split('\n'));
    };
    try {
      await d.client.execute('block-dirty-bitmap-add', { node: 'disk', name: 'b0' });
      await d.client.execute('block-dirty-bitmap-add', { node: 'disk', name: 'b1', disabled: true });
      await d.client.execute('block-export-add', { type: 'nbd', id: 'e1', 'node-name': 'disk', name: 'bm', bitmaps: ['b1'] });
      await say('nbdinfo', ['--list', `nbd+unix://?socket=${d.nbdPath}`]);
      await say('nbdinfo', ['--map', uri(d.nbdPath, 'exp')]);
      await say('nbdinfo', ['--map=qemu:allocation-depth', uri(d.nbdPath, 'exp')]);
      await say('nbdinfo', ['--map=qemu:dirty-bitmap:b1', uri(d.nbdPath, 'bm')]);
      // Out: the export into a file, equal to the image.
      await say('nbdcopy', [uri(d.nbdPath, 'exp'), join(dir, 'out.raw')]);
      // In: a file into the writable export; writes mark b0, not the disabled b1.
      const src = join(dir, 'in.raw');
      expect((await qemuImg('create', '-q', '-f', 'raw', src, '8M')).code).toBe(0);
      expect((await qemuIo('-f', 'raw', '-c', 'write -P 0x33 2M 3M', src)).code).toBe(0);
      await d.client.execute('block-export-del', { id: 'e1' });
      await say('nbdcopy', [src, uri(d.nbdPath, 'exp')]);
      await say('nbdinfo', ['--map', uri(d.nbdPath, 'exp')]);
      const nodes = await d.client.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name: string; count: number }> }>>('query-named-block-nodes', { flat: true });
      out.push(JSON.stringify(nodes.find((n) => n['node-name'] === 'disk')?.['dirty-bitmaps']?.map((b) => [b.name, b.count])));
    } finally {
      await d.quit();
    }
    const cmp = await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', img, join(dir, 'in.raw'));
    out.push(`compare image with what was copied in: ${cmp.code} ${cmp.stdout.trim()}`);
    return out;
  });
}

describe.skipIf(!libnbd || !qemu.available || !qemu.storageDaemon)("libnbd's nbdinfo and nbdcopy against the NBD export", () => {
  it('print and copy the same through blockemu as through qemu-storage-daemon', async () => {
    const theirs = await outputs('qsd');
    expect(theirs.join('\n')).toContain('description: the disk');
    expect(theirs.join('\n')).toContain('compare image with what was copied in: 0 Images are identical.');
    expect(await outputs(OURS)).toEqual(theirs);
  }, 60_000);
});
