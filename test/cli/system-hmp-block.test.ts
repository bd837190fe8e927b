import { describe, expect, it } from 'vitest';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';
import { BASE, qemuSystem, qmpTranscript, type SystemProg } from '../helpers/system.js';

/**
 * The human monitor's block operations (commit, drive_backup,
 * drive_mirror, snapshot_blkdev, block_set_io_throttle) on `blockemu
 * system` against qemu-system-x86_64 7.2: the same QMP session of
 * human-monitor-command calls on each, replies and events compared, then
 * the images each left compared by qemu-img.
 */
const hmp = (line: string) => JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': line } });
const CAPS = '{"execute": "qmp_capabilities"}';
const QUIT = '{"execute": "quit"}';
const generated = (l: string) => l.replace(/#block\d+/g, '#blockN');

if (!qemuSystem.available || !qemu.available) {
  if (process.env['CI'] === 'true') throw new Error('qemu-system-x86_64 and qemu-img are needed in CI');
  console.warn('skipping system-hmp-block tests: qemu-system-x86_64 or qemu-img is not installed');
}

async function expectSame(a: string, b: string): Promise<void> {
  const r = await qemuImg('compare', a, b);
  expect(r.stdout + r.stderr).toBe('Images are identical.\n');
}

describe.skipIf(!qemuSystem.available || !qemu.available)('blockemu system: HMP block operations against qemu-system-x86_64', () => {
  /** Each program gets its own copy of the images named in `files` (made by `make` in `dir`), prefixed by its name. */
  const session = async (dir: string, make: (p: (name: string) => string) => Promise<void>, args: (p: (name: string) => string) => string[], requests: string[]) => {
    const out: Record<SystemProg, { lines: string[]; code: number | null; stderr: string; stdout: string }> = {} as never;
    for (const prog of ['qemu', 'blockemu'] as const) {
      const p = (name: string) => join(dir, `${prog}-${name}`);
      await make(p);
      const t = await qmpTranscript(prog, dir, [...BASE, ...args(p)], requests.map((r) => r.replaceAll('PFX-', `${prog}-`).replaceAll('DIR/', `${dir}/`)));
      // File names differ by the program's prefix only (JSON-escaped or not).
      out[prog] = { ...t, lines: t.lines.map((l) => generated(l).replaceAll(`${dir}/${prog}-`, 'DIR/PFX-')), stdout: t.stdout.replaceAll(`${dir}/${prog}-`, 'DIR/PFX-') };
    }
    expect(out.blockemu).toEqual(out.qemu);
    return out.blockemu;
  };

  it('commit copies what the drive holds into its backing file and empties the drive; errors as QEMU reports them', async () => {
    await withTempDir(async (dir) => {
      const make = async (p: (n: string) => string) => {
        await qemuImg('create', '-f', 'qcow2', p('base.qcow2'), '4M');
        await qemuIo('-c', 'write -P 1 0 4M', p('base.qcow2'));
        await qemuImg('create', '-f', 'qcow2', '-b', p('base.qcow2'), '-F', 'qcow2', p('top.qcow2'), '6M');
        await qemuIo('-c', 'write -P 2 1M 1M', '-c', 'write -P 3 5M 64k', p('top.qcow2'));
        await qemuImg('create', '-f', 'qcow2', p('lone.qcow2'), '1M');
      };
      const t = await session(
        dir,
        make,
        (p) => ['-S', '-drive', `if=none,id=d0,file=${p('top.qcow2')}`, '-drive', `if=none,id=d1,file=${p('lone.qcow2')}`, '-drive', 'if=none,id=empty'],
        [CAPS, hmp('commit nope'), hmp('commit empty'), hmp('commit d1'), hmp('commit d0'), hmp('commit all'), QUIT],
      );
      expect(t.lines).toContain(`{"return": "Device 'nope' not found\\r\\n"}`);
      expect(t.lines).toContain(`{"return": "'commit' error for 'd1': Operation not supported\\r\\n"}`);
      // The base grew to the top's size and holds the top's data; the top holds nothing of its own any more.
      await expectSame(join(dir, 'qemu-base.qcow2'), join(dir, 'blockemu-base.qcow2'));
      await expectSame(join(dir, 'qemu-top.qcow2'), join(dir, 'blockemu-top.qcow2'));
      const map = await qemuImg('map', '--output=json', join(dir, 'blockemu-top.qcow2'));
      expect(map.stdout).not.toContain('"depth": 0, "present": true');
      for (const f of ['base.qcow2', 'top.qcow2']) expect((await qemuImg('check', join(dir, `blockemu-${f}`))).code).toBe(0);
    });
  });

  it('snapshot_blkdev_internal and snapshot_delete_blkdev_internal take and delete internal snapshots, with QEMU\'s errors', async () => {
    await withTempDir(async (dir) => {
      const make = async (p: (n: string) => string) => {
        await qemuImg('create', '-f', 'qcow2', p('d.qcow2'), '1M');
      };
      const t = await session(
        dir,
        make,
        (p) => ['-S', '-drive', `if=none,id=d0,file=${p('d.qcow2')}`, '-drive', 'if=none,id=empty'],
        [
          CAPS,
          hmp('snapshot_blkdev_internal d0 s1'),
          hmp('snapshot_blkdev_internal d0 s1'),
          hmp('snapshot_blkdev_internal empty s1'),
          hmp('snapshot_blkdev_internal nope s1'),
          hmp('snapshot_blkdev_internal d0 s2'),
          hmp('snapshot_delete_blkdev_internal d0 nope'),
          hmp('snapshot_delete_blkdev_internal d0 s1 9'),
          hmp('snapshot_delete_blkdev_internal d0 s1 1'),
          hmp('snapshot_delete_blkdev_internal d0'),
          hmp('snapshot_blkdev_internal d0 s3'),
          QUIT,
        ],
      );
      expect(t.lines).toContain(`{"return": "Error: Snapshot with name 's1' already exists on device 'd0'\\r\\n"}`);
      const names = async (prog: string) => (await qemuImg('snapshot', '-l', join(dir, `${prog}-d.qcow2`))).stdout.split('\n').slice(2).map((l) => l.split(/\s+/).slice(0, 2).join(' '));
      expect(await names('blockemu')).toEqual(await names('qemu'));
      expect(await names('blockemu')).toEqual(['2 s2', '3 s3', '']);
      expect((await qemuImg('check', join(dir, 'blockemu-d.qcow2'))).code).toBe(0);
    });
  });

  it('drive_backup (top and -f full, -n existing), drive_mirror and snapshot_blkdev start what their QMP commands would', async () => {
    await withTempDir(async (dir) => {
      const make = async (p: (n: string) => string) => {
        await qemuImg('create', '-f', 'qcow2', p('base.qcow2'), '2M');
        await qemuIo('-c', 'write -P 1 0 2M', p('base.qcow2'));
        await qemuImg('create', '-f', 'qcow2', '-b', p('base.qcow2'), '-F', 'qcow2', p('top.qcow2'), '2M');
        await qemuIo('-c', 'write -P 2 64k 64k', p('top.qcow2'));
        await qemuImg('create', '-f', 'qcow2', p('existing.qcow2'), '2M');
      };
      await session(
        dir,
        make,
        (p) => ['-S', '-drive', `if=none,id=d0,file=${p('top.qcow2')}`],
        [
          CAPS,
          hmp('drive_backup'),
          hmp('drive_backup -n d0 DIR/PFX-existing.qcow2'),
          '{"wait": "BLOCK_JOB_COMPLETED"}',
          hmp('drive_backup -f d0 DIR/PFX-full.qcow2 qcow2'),
          '{"wait": "BLOCK_JOB_COMPLETED"}',
          hmp('drive_mirror -f d0 DIR/PFX-mirror.qcow2'),
          '{"wait": "BLOCK_JOB_READY"}',
          hmp('block_job_cancel d0'),
          '{"wait": "BLOCK_JOB_COMPLETED"}',
          hmp('snapshot_blkdev d0'),
          hmp('snapshot_blkdev d0 DIR/PFX-snap.qcow2'),
          hmp('info block d0'),
          hmp('block_set_io_throttle d0 1000000 0 0 0 0 0'),
          hmp('block_set_io_throttle nope 1 0 0 0 0 0'),
          QUIT,
        ],
      );
      // -n with sync=top: the clusters the top holds, with what they read through the chain.
      for (const f of ['existing.qcow2', 'full.qcow2', 'mirror.qcow2']) await expectSame(join(dir, `qemu-${f}`), join(dir, `blockemu-${f}`));
      await expectSame(join(dir, 'blockemu-full.qcow2'), join(dir, 'blockemu-top.qcow2'));
    });
  });

  it('a -drive backing.file.filename without backing.driver has its format probed, as bdrv_open does (iotest 130)', async () => {
    await withTempDir(async (dir) => {
      const make = async (p: (n: string) => string) => {
        await qemuImg('create', '-f', 'qcow2', p('other.qcow2'), '1M');
        await qemuIo('-c', 'write -P 7 0 1M', p('other.qcow2'));
        await qemuImg('create', '-f', 'qcow2', p('top.qcow2'), '1M');
      };
      const t = await session(
        dir,
        make,
        (p) => ['-S', '-drive', `if=none,id=d0,file=${p('top.qcow2')},backing.file.filename=${p('other.qcow2')}`],
        [CAPS, hmp('qemu-io d0 "read -P 7 0 1M"'), hmp('info block d0'), QUIT],
      );
      expect(t.lines.join('\n')).toContain('other.qcow2');
    });
  });
});

describe.skipIf(!qemu.available)('an active commit past the end of a shorter middle layer (iotest 274)', () => {
  it('copies the zeroes the short layer shows into the base, so the data reads the same after the pivot', async () => {
    await withTempDir(async (dir) => {
      const base = join(dir, 'base.qcow2');
      const mid = join(dir, 'mid.qcow2');
      const top = join(dir, 'top.qcow2');
      await qemuImg('create', '-f', 'qcow2', base, '2M');
      await qemuIo('-c', 'write -P 1 0 2M', base);
      await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', mid, '1M');
      await qemuImg('create', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top, '2M');
      const pristine = join(dir, 'pristine-base.qcow2');
      await copyFile(base, pristine);
      const args = (b: string, m: string, t: string) => [
        ...BASE, '-S',
        '-blockdev', `file,filename=${b},node-name=base-file`, '-blockdev', 'qcow2,file=base-file,node-name=base',
        '-blockdev', `file,filename=${m},node-name=mid-file`, '-blockdev', 'qcow2,file=mid-file,node-name=mid,backing=base',
        '-drive', `if=none,id=drive0,file=${t},backing=mid,node-name=top`,
      ];
      const requests = [CAPS, '{"execute": "block-commit", "arguments": {"device": "top", "base-node": "base", "job-id": "job0"}}', '{"wait": "BLOCK_JOB_READY"}', '{"execute": "job-complete", "arguments": {"id": "job0"}}', '{"wait": "BLOCK_JOB_COMPLETED"}', QUIT];
      const b = await qmpTranscript('blockemu', dir, args(base, mid, top), requests);
      expect(b.lines.find((l) => l.includes('BLOCK_JOB_READY'))).toContain('"len": 1048576, "offset": 1048576');
      // What the top showed past 1M (zeroes from the short middle layer) is what the base holds now.
      expect((await qemuIo('-c', 'read -P 0 1M 1M', '-c', 'read -P 1 0 1M', base)).stdout).not.toContain('verification failed');
      expect((await qemuImg('check', base)).code).toBe(0);
      if (qemuSystem.available) {
        await copyFile(pristine, join(dir, 'q-base.qcow2'));
        await qemuImg('create', '-f', 'qcow2', '-b', join(dir, 'q-base.qcow2'), '-F', 'qcow2', join(dir, 'q-mid.qcow2'), '1M');
        await qemuImg('create', '-f', 'qcow2', '-b', join(dir, 'q-mid.qcow2'), '-F', 'qcow2', join(dir, 'q-top.qcow2'), '2M');
        const q = await qmpTranscript('qemu', dir, args(join(dir, 'q-base.qcow2'), join(dir, 'q-mid.qcow2'), join(dir, 'q-top.qcow2')), requests);
        expect(b.lines).toEqual(q.lines);
        await expectSame(base, join(dir, 'q-base.qcow2'));
      }
    });
  });
});
