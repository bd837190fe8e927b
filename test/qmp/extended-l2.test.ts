/**
 * qcow2 images with extended L2 entries over QMP, the same session played
 * against qemu-storage-daemon 7.2 and blockemu's daemon: blockdev-create
 * with extended-l2 (its refusals, and backing file with preallocation,
 * which only extended L2 entries allow), blockdev-add of an image whose
 * subclusters qemu-io wrote, what query-named-block-nodes says of it, and
 * a full backup from it into a new extended-L2 image. The replies must be
 * equal; the images each daemon wrote must pass qemu-img check and read as
 * the source does.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, withDaemon } from '../helpers/bitmap-daemon.js';
import { answer, createJob } from '../helpers/qmp-transcript.js';
import { qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;



async function session(which: Daemon, dir: string): Promise<unknown[]> {
  const src = join(dir, 'src.qcow2');
  const target = join(dir, 'target.qcow2');
  const other = join(dir, 'other.qcow2');
  await writeFile(target, new Uint8Array(0));
  await writeFile(other, new Uint8Array(0));
  const t: unknown[] = [];
  await withDaemon(
    which,
    src,
    async (c) => {
      const say = async (cmd: string, args: Record<string, unknown>) => t.push([cmd, await answer(c, cmd, args)]);
      await say('blockdev-add', { driver: 'file', 'node-name': 'tfile', filename: target });
      await say('blockdev-add', { driver: 'file', 'node-name': 'ofile', filename: other });
      t.push(await createJob(c, { driver: 'qcow2', file: 'tfile', size: 4 * MiB, 'extended-l2': true, 'cluster-size': 8192 }));
      t.push(await createJob(c, { driver: 'qcow2', file: 'tfile', size: 4 * MiB, 'extended-l2': true, version: 'v2' }));
      t.push(await createJob(c, { driver: 'qcow2', file: 'ofile', size: 4 * MiB, 'extended-l2': true, 'backing-file': src, 'backing-fmt': 'qcow2', preallocation: 'metadata' }));
      t.push(await createJob(c, { driver: 'qcow2', file: 'ofile', size: 4 * MiB, 'backing-file': src, preallocation: 'metadata' }));
      t.push(await createJob(c, { driver: 'qcow2', file: 'tfile', size: 4 * MiB, 'extended-l2': true, 'cluster-size': 32768 }));
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'src', file: { driver: 'file', filename: src } });
      await say('blockdev-add', { driver: 'qcow2', 'node-name': 'target', file: 'tfile' });
      const nodes = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
      const node = nodes.find((n) => n['node-name'] === 'src') as { image: Record<string, unknown> } | undefined;
      t.push(node?.image['format-specific']);
      await say('blockdev-backup', { 'job-id': 'b', device: 'src', target: 'target', sync: 'full' });
      const done = await c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.['device'] === 'b');
      t.push(done.data);
      await say('blockdev-del', { 'node-name': 'target' });
      await say('blockdev-del', { 'node-name': 'src' });
    },
    { bare: true },
  );
  return JSON.parse(JSON.stringify(t).replaceAll(dir, 'DIR')) as unknown[];
}

interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
}

/** qemu-img map's extents without host offsets, neighbours of one kind merged. */
function extents(json: string): MapEntry[] {
  const out: MapEntry[] = [];
  for (const { start, length, depth, present, zero, data } of JSON.parse(json) as MapEntry[]) {
    const last = out.at(-1);
    if (last && last.start + last.length === start && last.depth === depth && last.present === present && last.zero === zero && last.data === data) last.length += length;
    else out.push({ start, length, depth, present, zero, data });
  }
  return out;
}

describe.skipIf(!qemu.available)('qcow2 extended L2 entries over QMP (vs qemu-storage-daemon)', () => {
  it('blockdev-create, blockdev-add and a backup answer as qsd does, and the images read the same', async () => {
    await withTempDir(async (dir) => {
      for (const side of ['q', 'b']) {
        await mkdir(join(dir, side));
        const src = join(dir, side, 'src.qcow2');
        expect((await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', src, '4M')).code).toBe(0);
        const io = await run('qemu-io', ['-c', 'write -P 0x11 2k 3k', '-c', 'write -z 16k 8k', '-c', 'write -P 0x22 100k 300k', '-c', 'write -c -P 0x33 1M 64k', '-c', 'write -z -u 200k 64k', src]);
        expect(io.code).toBe(0);
      }
      const q = await session('qsd', join(dir, 'q'));
      const b = await session('blockemu', join(dir, 'b'));
      expect(b).toEqual(q);
      for (const side of ['q', 'b']) {
        const target = join(dir, side, 'target.qcow2');
        expect((await qemuImg('check', target)).code).toBe(0);
        expect((await qemuImg('check', join(dir, side, 'other.qcow2'))).code).toBe(0);
        expect((await qemuImg('compare', join(dir, side, 'src.qcow2'), target)).stdout).toBe('Images are identical.\n');
      }
      // The same extents, zero and data; not the same host offsets, which follow the order qsd's parallel copy tasks end in.
      const maps = await Promise.all(['q', 'b'].map(async (side) => extents((await qemuImg('map', '--output=json', join(dir, side, 'target.qcow2'))).stdout)));
      expect(maps[1]).toEqual(maps[0]);
    });
  });
});
