/**
 * blkdebug's rules as QEMU plays them, through an NBD export of each
 * daemon with qemu-io as the client (one run per command, as a failed
 * structured read makes qemu-storage-daemon drop its client): events that
 * arm rules come from the format above (read_aio and write_aio for guest
 * data only, so a qcow2's metadata arms nothing of those), from the
 * generic write path on the blkdebug node itself (pwritev, pwritev_zero,
 * pwritev_done) and from flushes (flush_to_os always, flush_to_disk only
 * when something was written since the last flush); a rule fails only the
 * request kinds of its iotype; the first armed rule that covers a request
 * decides, errno 0 letting it through; of several set-state rules the
 * first given wins. qemu-io writes with FUA, which the format emulates
 * with a flush.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, failedStart, nbdUri, OURS, playQmp, startExportDaemon } from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

/** qemu-io's output without its timing lines. */
const lines = (out: string) => out.split('\n').filter((l) => !/ops\/sec|^\s*$/.test(l));

interface Scenario {
  format: 'raw' | 'qcow2' | 'blkdebug';
  /** Whether some request fails (all do but where a rule lets them through). */
  fails?: false;
  rules: { 'inject-error'?: unknown[]; 'set-state'?: unknown[] };
  cmds: string[];
}

const SCENARIOS: Record<string, Scenario> = {
  'flush_to_disk arms only once something was written': {
    format: 'raw',
    rules: { 'inject-error': [{ event: 'flush_to_disk' }] },
    cmds: ['read 0 4k', 'flush', 'read 0 4k', 'write -P 1 0 4k', 'read 0 4k', 'write 0 4k'],
  },
  'flush_to_os arms at every flush': {
    format: 'raw',
    rules: { 'inject-error': [{ event: 'flush_to_os', iotype: 'read' }] },
    cmds: ['read 0 4k', 'flush', 'write 0 4k', 'read 0 4k'],
  },
  'a flush rule armed at open: a flush reaches blkdebug only after writes': {
    format: 'raw',
    rules: { 'inject-error': [{ event: 'none', iotype: 'flush', once: true }] },
    cmds: ['flush', 'read 0 4k', 'write 0 4k', 'flush', 'write 0 4k'],
  },
  'a write rule armed by a read': {
    format: 'raw',
    rules: { 'inject-error': [{ event: 'read_aio', iotype: 'write' }] },
    cmds: ['write 0 4k', 'read 0 4k', 'write -z 0 4k', 'read 0 4k', 'write 0 4k'],
  },
  'qcow2: only guest data reads arm read_aio, metadata does not': {
    format: 'qcow2',
    rules: { 'inject-error': [{ event: 'read_aio', iotype: 'write' }] },
    cmds: ['read 0 4k', 'write -P 2 0 4k', 'read 64k 4k', 'write 128k 4k', 'read 0 4k', 'write 0 4k'],
  },
  'qcow2: l2_update arms when its tables are written out': {
    format: 'qcow2',
    rules: { 'inject-error': [{ event: 'l2_update', iotype: 'read', once: true }] },
    cmds: ['read 0 4k', 'write 0 4k', 'read 0 4k', 'read 0 4k'],
  },
  'pwritev events on the blkdebug node itself': {
    format: 'blkdebug',
    rules: { 'inject-error': [{ event: 'pwritev_done', iotype: 'read', once: true }, { event: 'pwritev_zero', iotype: 'write-zeroes', errno: 28 }] },
    cmds: ['read 0 4k', 'write 0 4k', 'read 0 4k', 'write -z 0 4k', 'read 0 4k'],
  },
  'errno 0 shadows the rules after it and stays': {
    format: 'raw',
    fails: false,
    rules: { 'inject-error': [{ event: 'read_aio', errno: 0, once: true }, { event: 'read_aio' }] },
    cmds: ['read 0 4k', 'read 0 4k'],
  },
  'the first of several matching set-state rules wins': {
    format: 'raw',
    rules: {
      'set-state': [{ event: 'read_aio', new_state: 2 }, { event: 'read_aio', new_state: 3 }],
      'inject-error': [{ event: 'write_aio', state: 2 }, { event: 'write_aio', state: 3, errno: 28 }],
    },
    cmds: ['read 0 4k', 'write 0 4k'],
  },
};

async function session(which: Daemon, s: Scenario): Promise<string[]> {
  return withTempDir(async (dir) => {
    const img = join(dir, `disk.${s.format === 'qcow2' ? 'qcow2' : 'raw'}`);
    expect((await qemuImg('create', '-q', '-f', s.format === 'qcow2' ? 'qcow2' : 'raw', img, '1M')).code).toBe(0);
    // Data in a raw file, so that NBD reads it instead of answering a hole (blockemu finds holes by their zeroes).
    if (s.format !== 'qcow2') expect((await qemuIo('-f', 'raw', '-c', 'write -P 0x5a 0 64k', img)).code).toBe(0);
    const dbg = JSON.stringify({ driver: 'blkdebug', 'node-name': 'dbg', image: 'disk-file', ...s.rules });
    const top = s.format === 'blkdebug' ? [] : [`driver=${s.format},node-name=disk,file=dbg`];
    const d = await startExportDaemon(which, {
      dir,
      blockdevs: [`driver=file,node-name=disk-file,filename=${img}`, dbg, ...top],
      nbdServer: true,
      exports: [`type=nbd,id=e0,node-name=${s.format === 'blkdebug' ? 'dbg' : 'disk'},name=exp,writable=on`],
    });
    try {
      const out: string[] = [];
      for (const cmd of s.cmds) {
        const r = await qemuIo('-f', 'raw', '-c', cmd, nbdUri(d.nbdPath, 'exp'));
        out.push(`${cmd}: exit ${r.code}`, ...lines(r.stdout), ...lines(r.stderr));
      }
      return out;
    } finally {
      await d.quit();
    }
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('blkdebug rules, events and iotypes as in QEMU', () => {
  for (const [name, s] of Object.entries(SCENARIOS)) {
    it(name, async () => {
      const theirs = await session('qsd', s);
      if (s.fails !== false) expect(theirs.join('\n')).toMatch(/failed/);
      expect(await session(OURS, s)).toEqual(theirs);
    }, 60_000);
  }
});

/**
 * blkdebug's constraint options (blkdebug_open): sizes, the alignment a
 * power of 2 below INT_MAX, every other limit below INT_MAX and a
 * multiple of the alignment in force (the image's too: a blkdebug image
 * with its own align), the max- limits of their opt- limit; a refused
 * node leaves its image free.
 */
const CONSTRAINTS: Array<Record<string, unknown>> = [
  { align: 3 },
  { align: 0 },
  { align: -1 },
  { align: 4096 },
  { align: 2147483648 },
  { align: 1073741824 },
  { 'max-transfer': 3 },
  { 'max-transfer': -512 },
  { align: 4096, 'max-transfer': 512 },
  { align: 4096, 'max-transfer': 8192 },
  { 'max-transfer': 2147483647 },
  { 'opt-write-zero': -1 },
  { align: 512, 'opt-write-zero': 256 },
  { 'opt-write-zero': 4096, 'max-write-zero': 6144 },
  { 'opt-write-zero': 4096, 'max-write-zero': 8192 },
  { align: 4096, 'max-write-zero': 2048 },
  { 'opt-discard': 100 },
  { align: 65536, 'opt-discard': 4096 },
  { 'opt-discard': 4096, 'max-discard': 2048 },
  { 'max-discard': 2147483647 },
  { align: 3, 'max-transfer': 3 },
  { image: { driver: 'blkdebug', image: 'f', align: 4096 }, 'max-transfer': 512 },
  { image: { driver: 'blkdebug', image: 'f', align: 4096 }, 'opt-discard': 8192 },
];

async function constraints(which: Daemon): Promise<unknown[]> {
  return withTempDir(async (dir) => {
    const img = join(dir, 'd.raw');
    expect((await qemuImg('create', '-q', '-f', 'raw', img, '1M')).code).toBe(0);
    return playQmp(which, { dir, blockdevs: [`driver=file,node-name=f,filename=${img}`] }, [
      ...CONSTRAINTS.map((c, i): [string, Record<string, unknown>] => ['blockdev-add', { driver: 'blkdebug', 'node-name': `b${i}`, image: 'f', ...c }]),
      ['blockdev-del', { 'node-name': 'b3' }],
      ['blockdev-del', { 'node-name': 'b1' }],
      ['blockdev-del', { 'node-name': 'f' }],
    ]);
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('blkdebug constraint options', () => {
  it("are refused as blkdebug_open refuses them, in QEMU's words", async () => {
    const theirs = await constraints('qsd');
    expect(JSON.stringify(theirs)).toContain('Cannot meet constraints with align 3');
    expect(await constraints(OURS)).toEqual(theirs);
  }, 60_000);

  it('on the command line too', async () => {
    for (const opt of ['align=3', 'max-transfer=1000,align=512', 'align=-4096']) {
      const run = (which: Daemon) =>
        withTempDir(async (dir) => {
          const img = join(dir, 'd.raw');
          expect((await qemuImg('create', '-q', '-f', 'raw', img, '1M')).code).toBe(0);
          return failedStart(which, { dir, blockdevs: [`driver=file,node-name=f,filename=${img}`, `driver=blkdebug,node-name=b,image=f,${opt}`] });
        });
      const theirs = await run('qsd');
      expect(theirs.code, opt).toBe(1);
      expect(await run(OURS), opt).toEqual(theirs);
    }
  }, 60_000);
});
