import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { qemuImg, qemuIo, run, runBlockemu, withTempDir } from '../helpers/qemu.js';
import { lockedBytes } from '../helpers/locks.js';
import { BASE, qemuSystem, qmpTranscript, type SystemProg } from '../helpers/system.js';
import { SystemSession } from '../helpers/system-session.js';

const hmp = (line: string) => JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': line } });
const events = '{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "events", "state": true}]}}';
/** The MIGRATION_PASS count depends on how much of the guest's RAM QEMU sends again; the other events must match. */
const withoutPasses = (list: readonly string[]) => list.filter((e) => !e.includes('"MIGRATION_PASS"'));
/** query-migrate's times differ run to run, and blockemu has no guest RAM to report statistics of. */
const timesOff = (reply: string) => reply.replace(/("(?:setup-time|downtime|total-time)": )\d+/g, '$1N').replace(/, "ram": \{[^}]*\}/, '');

interface MigrationRun {
  source: string[];
  dest: string[];
  sourceEvents: string[];
  destEvents: string[];
  /** Lock bytes on the image: both machines up, before the migration and after it. */
  locksBefore: number[];
  locksAfter: number[];
  /** What a third process gets trying to write the image while the destination runs it. */
  outsideWrite: string;
  codes: Array<number | null>;
}

/**
 * Two machines on one qcow2 image, the destination started with -incoming
 * unix:…; the source writes, migrates, and the destination reads what it
 * wrote and writes more.
 */
async function migrateOverUnix(prog: SystemProg, dir: string): Promise<MigrationRun> {
  const img = join(dir, `${prog}.qcow2`);
  await qemuImg('create', '-q', '-f', 'qcow2', img, '64M');
  const drive = ['-drive', `if=none,id=drive0,file=${img},format=qcow2`, '-device', 'virtio-blk-pci,drive=drive0,id=vda'];
  const sock = join(dir, `${prog}-mig.sock`);
  const dest = await SystemSession.start(prog, dir, 'dest', [...BASE, ...drive, '-incoming', `unix:${sock}`]);
  const source = await SystemSession.start(prog, dir, 'source', [...BASE, ...drive]);
  try {
    const out = { source: [] as string[], dest: [] as string[] };
    const src = async (t: string) => void out.source.push(await source.command(t));
    const dst = async (t: string) => void out.dest.push((await dest.command(t)).replaceAll(sock, 'SOCK'));
    await src(events);
    await dst(events);
    await dst('{"execute": "query-status"}');
    await dst('{"execute": "query-migrate"}');
    await src(hmp('qemu-io drive0 "write -P 0x22 0 64k"'));
    const locksBefore = await lockedBytes(img);
    await src(`{"execute": "migrate", "arguments": {"uri": "unix:${sock}"}}`);
    await source.waitForEvents('"completed"');
    await dest.waitForEvents('"completed"');
    out.source.push(timesOff(await source.command('{"execute": "query-migrate"}')));
    await dst('{"execute": "query-migrate"}');
    // The completed event may come before the source's state is postmigrate (it leaves finish-migrate just after).
    let status = '';
    while (!status.includes('postmigrate')) status = await source.command('{"execute": "query-status"}');
    out.source.push(status);
    await dst('{"execute": "query-status"}');
    const locksAfter = await lockedBytes(img);
    const outside = await qemuIo('-c', 'write 0 512', img);
    await dst(hmp('qemu-io drive0 "read -P 0x22 0 64k"'));
    await dst(hmp('qemu-io drive0 "write -P 0x33 64k 64k"'));
    // The source may not migrate again: its images are the destination's now.
    await src(`{"execute": "migrate", "arguments": {"uri": "unix:${sock}"}}`);
    const codes = [await dest.quit(), await source.quit()];
    return {
      ...out,
      sourceEvents: source.events,
      destEvents: dest.events,
      locksBefore,
      locksAfter,
      outsideWrite: (outside.stderr + outside.stdout).replaceAll(img, 'IMG'),
      codes,
    };
  } finally {
    source.kill();
    dest.kill();
  }
}

describe.skipIf(!qemuSystem.available)('blockemu system against qemu-system-x86_64: migration', () => {
  it('migrates over a Unix socket with the same replies, events, run states and image locks', async () => {
    await withTempDir(async (dir) => {
      const q = await migrateOverUnix('qemu', dir);
      const b = await migrateOverUnix('blockemu', dir);
      expect(b.source).toEqual(q.source);
      expect(b.dest).toEqual(q.dest);
      expect(withoutPasses(b.sourceEvents)).toEqual(withoutPasses(q.sourceEvents));
      expect(withoutPasses(b.destEvents)).toEqual(withoutPasses(q.destEvents));
      expect(b.sourceEvents.some((e) => e.includes('"MIGRATION_PASS"'))).toBe(true);
      expect(b.locksBefore).toEqual(q.locksBefore);
      expect(b.locksAfter).toEqual(q.locksAfter);
      expect(b.outsideWrite).toEqual(q.outsideWrite);
      expect(b.outsideWrite).toContain('Failed to get "write" lock');
      expect(b.codes).toEqual([0, 0]);
      // Both wrote where they owned the image: the source before the switch-over, the destination after.
      const img = join(dir, 'blockemu.qcow2');
      expect((await qemuIo('-c', 'read -P 0x22 0 64k', '-c', 'read -P 0x33 64k 64k', img)).stdout).not.toContain('Pattern verification failed');
      expect((await qemuImg('check', img)).stdout).toContain('No errors were found');
    });
  });
});

describe.skipIf(!qemuSystem.available)('blockemu system against qemu-system-x86_64: -incoming defer', () => {
  it('waits in inmigrate and answers the migration commands as QEMU does', async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'd.qcow2');
      await qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
      const session = async (prog: SystemProg) => {
        const sock = join(dir, `${prog}-in.sock`);
        const t = await qmpTranscript(prog, dir, [...BASE, '-drive', `if=none,id=drive0,file=${img},format=qcow2`, '-incoming', 'defer'], [
          '{"execute": "qmp_capabilities"}',
          '{"execute": "query-status"}',
          '{"execute": "query-migrate"}',
          '{"execute": "query-migrate-capabilities"}',
          '{"execute": "query-migrate-parameters"}',
          '{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": 500}}',
          '{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "events", "state": true}, {"capability": "late-block-activate", "state": true}]}}',
          '{"execute": "cont"}',
          '{"execute": "stop"}',
          '{"execute": "migrate", "arguments": {"uri": "exec:cat >/dev/null"}}',
          '{"execute": "migrate-incoming", "arguments": {"uri": "nope:x"}}',
          `{"execute": "migrate-incoming", "arguments": {"uri": "unix:${sock}"}}`,
          `{"execute": "migrate-incoming", "arguments": {"uri": "unix:${sock}"}}`,
          '{"execute": "query-migrate"}',
          hmp('info status'),
          '{"execute": "quit"}',
        ]);
        return t.lines.map((l) => l.replaceAll(sock, 'SOCK'));
      };
      const q = await session('qemu');
      const b = await session('blockemu');
      expect(b).toEqual(q);
      expect(b.join('\n')).toContain('"status": "inmigrate"');
    });
  });
});

// QEMU's own cancel of a migration into a pipe nobody reads stays `cancelling` until the command's write returns
// (the reader's side decides); blockemu ends the command at once. Only blockemu's sequence is checked here.
describe('blockemu system: migrate_cancel', () => {
  it('cancels a migration nobody reads: cancelling, cancelled, and the machine runs on', async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'd.qcow2');
      await qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
      const fifo = join(dir, 'mig.fifo');
      await run('mkfifo', [fifo]);
      const t = await qmpTranscript('blockemu', dir, [...BASE, '-drive', `if=none,id=drive0,file=${img},format=qcow2`], [
        '{"execute": "qmp_capabilities"}',
        events,
        `{"execute": "migrate", "arguments": {"uri": "exec:cat > ${fifo}"}}`,
        '{"wait": "MIGRATION"}',
        '{"wait": "MIGRATION"}',
        '{"execute": "migrate_cancel"}',
        '{"wait": "MIGRATION"}',
        '{"wait": "MIGRATION"}',
        '{"execute": "query-migrate"}',
        '{"execute": "query-status"}',
        '{"execute": "quit"}',
      ]);
      const migration = t.lines.filter((l) => l.includes('"MIGRATION"')).map((l) => JSON.parse(l).data.status);
      expect(migration).toEqual(['setup', 'active', 'cancelling', 'cancelled']);
      expect(t.lines).toContain('{"return": {"status": "running", "singlestep": false, "running": true}}');
      expect(t.lines.some((l) => l.includes('"STOP"') || l.includes('"RESUME"'))).toBe(false);
      expect(t.lines.find((l) => l.includes('"status": "cancelled", "setup-time"'))).toBeDefined();
      expect(t.code).toBe(0);
    });
  });
});

describe.skipIf(!qemuSystem.available)('blockemu system against qemu-system-x86_64: dirty bitmaps', () => {
  it('carries a drive\'s dirty bitmap with the dirty-bitmaps capability', async () => {
    await withTempDir(async (dir) => {
      const run1 = async (prog: SystemProg) => {
        const img = join(dir, `${prog}-bm.qcow2`);
        await qemuImg('create', '-q', '-f', 'qcow2', img, '4M');
        const drive = ['-drive', `if=none,id=drive0,file=${img},format=qcow2`];
        const sock = join(dir, `${prog}-bm.sock`);
        const caps = '{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "events", "state": true}, {"capability": "dirty-bitmaps", "state": true}]}}';
        const dest = await SystemSession.start(prog, dir, 'bm-dest', [...BASE, ...drive, '-incoming', `unix:${sock}`]);
        const source = await SystemSession.start(prog, dir, 'bm-source', [...BASE, ...drive]);
        try {
          await source.command(caps);
          await dest.command(caps);
          await source.command('{"execute": "block-dirty-bitmap-add", "arguments": {"node": "drive0", "name": "bitmap0"}}');
          await source.command(hmp('qemu-io drive0 "write 0 64k"'));
          await source.command('{"execute": "block-dirty-bitmap-add", "arguments": {"node": "drive0", "name": "off", "disabled": true}}');
          await source.command(`{"execute": "migrate", "arguments": {"uri": "unix:${sock}"}}`);
          await source.waitForEvents('"completed"');
          await dest.waitForEvents('"completed"');
          const bitmaps = async (s: SystemSession) => JSON.parse(await s.command('{"execute": "query-block"}')).return[0].inserted['dirty-bitmaps'];
          const out = { source: await bitmaps(source), dest: await bitmaps(dest) };
          await dest.quit();
          await source.quit();
          return out;
        } finally {
          source.kill();
          dest.kill();
        }
      };
      const q = await run1('qemu');
      const b = await run1('blockemu');
      expect(b).toEqual(q);
      expect(b.dest.find((x: { name: string }) => x.name === 'bitmap0').count).toBe(65536);
    });
  });
});

/**
 * An encrypted image migrated: the destination's qcow2 node, opened
 * inactive with its encrypt.key-secret, is opened again once the source
 * lets go (activation), and must unlock with the same key; likewise a
 * luks node. The same session with qemu-system-x86_64 as the baseline.
 */
async function migrateEncrypted(prog: SystemProg, dir: string, format: 'qcow2' | 'luks'): Promise<string[]> {
  const img = join(dir, `${prog}-enc.${format}`);
  const secret = ['-object', 'secret,id=sec0,data=123456'];
  const create = format === 'qcow2' ? ['-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10'] : ['-f', 'luks', '-o', 'key-secret=sec0,iter-time=10'];
  expect((await runBlockemu(['img', 'create', '-q', '--object', 'secret,id=sec0,data=123456', ...create, img, '16M'])).code).toBe(0);
  const key = format === 'qcow2' ? 'encrypt.key-secret=sec0' : 'key-secret=sec0';
  const drive = [...secret, '-drive', `if=none,id=drive0,file=${img},format=${format},${key}`, '-device', 'virtio-blk-pci,drive=drive0,id=vda'];
  const sock = join(dir, `${prog}-enc.sock`);
  const dest = await SystemSession.start(prog, dir, `dest-${format}`, [...BASE, ...drive, '-incoming', `unix:${sock}`]);
  const source = await SystemSession.start(prog, dir, `source-${format}`, [...BASE, ...drive]);
  try {
    const out: string[] = [];
    await source.command(events);
    await dest.command(events);
    await source.command(hmp('qemu-io drive0 "write -P 0x44 4k 60k"'));
    out.push(await source.command(`{"execute": "migrate", "arguments": {"uri": "unix:${sock}"}}`));
    await source.waitForEvents('"completed"');
    await dest.waitForEvents('"completed"');
    out.push(await dest.command(hmp('qemu-io drive0 "read -P 0x44 4k 60k"')));
    out.push(await dest.command(hmp('qemu-io drive0 "write -P 0x55 1M 64k"')));
    out.push(await dest.command(hmp('qemu-io drive0 "read -P 0x55 1M 64k"')));
    await dest.quit();
    await source.quit();
    return out.map((l) => l.replace(/\d+\.\d+ \S+\/sec and \d+\.\d+ ops\/sec/g, 'RATE').replace(/\d\d:\d\d:\d\d\.\d\d/g, 'TIME').replaceAll(sock, 'SOCK'));
  } finally {
    source.kill();
    dest.kill();
  }
}

describe.skipIf(!qemuSystem.available)('blockemu system against qemu-system-x86_64: encrypted images migrated', () => {
  for (const format of ['qcow2', 'luks'] as const) {
    it(`a ${format === 'qcow2' ? 'LUKS qcow2' : 'luks'} image: the destination unlocks it again when it takes over`, async () => {
      await withTempDir(async (dir) => {
        const q = await migrateEncrypted('qemu', dir, format);
        const b = await migrateEncrypted('blockemu', dir, format);
        expect(b).toEqual(q);
        expect(b.join('\n')).not.toMatch(/failed|Error/i);
        const opts = format === 'qcow2' ? 'encrypt.key-secret=sec0' : 'key-secret=sec0';
        const check = await run('qemu-io', ['--object', 'secret,id=sec0,data=123456', '--image-opts', `driver=${format},file.filename=${join(dir, `blockemu-enc.${format}`)},${opts}`, '-c', 'read -q -P 0x44 4k 60k', '-c', 'read -q -P 0x55 1M 64k']);
        expect(check).toMatchObject({ code: 0, stdout: '', stderr: '' });
      });
    });
  }
});
