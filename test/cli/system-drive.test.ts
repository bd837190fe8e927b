import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readdir } from 'node:fs/promises';
import { qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';
import { BASE, qemuSystem, qmpTranscript, runSystem, spawnSystem, type SystemProg } from '../helpers/system.js';

/**
 * -drive, the storage -devices and query-block, compared with
 * qemu-system-x86_64 7.2 line for line. Only the generated node names
 * (#blockNNN: QEMU's end in two random digits) and a running job's
 * progress are normalised.
 */
const both = async <T>(f: (p: SystemProg) => Promise<T>): Promise<[T, T]> => [await f('qemu'), await f('blockemu')];
const caps = '{"execute": "qmp_capabilities"}';
const quit = '{"execute": "quit"}';
/** Generated node names, and how far a rate-limited job got when asked (timing). */
const generated = (s: string) => s.replace(/#block\d+/g, '#blockN').replace(/"offset": \d+/g, '"offset": N');

if (!qemuSystem.available || !qemu.available) {
  if (process.env['CI'] === 'true') throw new Error('qemu-system-x86_64 and qemu-img are needed in CI');
  console.warn('skipping system-drive tests: qemu-system-x86_64 or qemu-img is not installed');
}

describe.skipIf(!qemuSystem.available || !qemu.available)('blockemu system -drive/-device against qemu-system-x86_64', () => {
  /** Both programs on the same images (the same absolute file names), the transcripts compared. */
  const compare = (args: (dir: string) => string[], requests: string[] | ((dir: string) => string[])) =>
    withTempDir(async (dir) => {
      for (const f of ['X', 'Y', 'Z']) await qemuImg('create', '-f', 'qcow2', join(dir, `${f}.qcow2`), '64M');
      await qemuImg('create', '-f', 'raw', join(dir, 'R.img'), '1M');
      const reqs = typeof requests === 'function' ? requests(dir) : requests;
      const [q, b] = await both((p) => qmpTranscript(p, dir, [...BASE, '-S', ...args(dir)], reqs));
      const norm = (t: typeof q) => ({ code: t.code, stderr: t.stderr, lines: t.lines.map(generated) });
      expect(norm(b)).toEqual(norm(q));
      return b;
    });
  const queryBlock = [caps, '{"execute": "query-block"}', quit];

  it('ejecting a drive that nbd-server-add exported by its name shuts that export down (nbd_eject_notifier, iotest 140)', async () => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-f', 'raw', join(dir, 'R.img'), '1M');
      await qemuImg('create', '-f', 'raw', join(dir, 'S.img'), '1M');
      const requests = [
        caps,
        JSON.stringify({ execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: { path: join(dir, 'nbd.sock') } } } }),
        '{"execute": "nbd-server-add", "arguments": {"device": "drv"}}',
        // Exported by node name: an eject of some drive does not touch it.
        '{"execute": "nbd-server-add", "arguments": {"device": "n", "name": "other"}}',
        '{"execute": "eject", "arguments": {"device": "drv"}}',
        '{"execute": "query-block-exports"}',
        quit,
      ];
      const args = ['-drive', `if=none,id=drv,media=cdrom,file=${dir}/R.img,format=raw`, '-blockdev', `driver=file,filename=${dir}/S.img,node-name=n`];
      const [q, b] = await both((p) => qmpTranscript(p, dir, [...BASE, '-S', ...args], requests));
      // The order of eject's reply and BLOCK_EXPORT_DELETED is undefined in QEMU (iotest 140 says so).
      expect([...b.lines].sort()).toEqual([...q.lines].sort());
      expect(b.lines.filter((l) => l.includes('BLOCK_EXPORT_DELETED'))).toHaveLength(2);
    });
  });

  it("takes -drive's aio as a flag, not an option a reopen would have to repeat (iotest 165)", async () => {
    await compare(
      (d) => ['-drive', `if=none,id=d0,file=${d}/X.qcow2,format=qcow2,aio=threads,node-name=n0`, '-drive', `if=none,id=d1,file=${d}/Y.qcow2,format=qcow2,aio=native,cache.direct=on,node-name=n1`],
      (d) => [
        caps,
        JSON.stringify({ execute: 'blockdev-reopen', arguments: { options: [{ 'node-name': 'n0', driver: 'qcow2', file: { driver: 'file', filename: `${d}/X.qcow2` }, 'read-only': false }] } }),
        JSON.stringify({ execute: 'blockdev-reopen', arguments: { options: [{ 'node-name': 'n1', driver: 'qcow2', file: { driver: 'file', filename: `${d}/Y.qcow2` } }] } }),
        '{"execute": "query-named-block-nodes", "arguments": {"flat": true}}',
        quit,
      ],
    );
  });

  it("an eject closes the -drive's own node (its image free for another), but keeps a -blockdev node the monitor added", async () => {
    await compare(
      (d) => ['-drive', `if=none,id=cd,media=cdrom,file=${d}/X.qcow2,format=qcow2`, '-device', 'ide-cd,drive=cd,id=cdrom', '-blockdev', `driver=file,filename=${d}/R.img,node-name=r`],
      (d) => [
        caps,
        '{"execute": "eject", "arguments": {"device": "cd"}}',
        '{"execute": "query-named-block-nodes", "arguments": {"flat": true}}',
        JSON.stringify({ execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': 'x', file: { driver: 'file', filename: `${d}/X.qcow2` } } }),
        '{"execute": "blockdev-insert-medium", "arguments": {"id": "cdrom", "node-name": "r"}}',
        '{"execute": "blockdev-remove-medium", "arguments": {"id": "cdrom"}}',
        '{"execute": "query-named-block-nodes", "arguments": {"flat": true}}',
        quit,
      ],
    );
  });

  it('an export nobody uses is deleted before the reply to nbd-server-remove or block-export-del (BLOCK_EXPORT_DELETED first, as QEMU 7.2.9+ sends it)', async () => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-f', 'qcow2', join(dir, 'X.qcow2'), '1M');
      const requests = [
        caps,
        JSON.stringify({ execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: { path: join(dir, 'nbd.sock') } } } }),
        '{"execute": "nbd-server-add", "arguments": {"device": "n0", "name": "n"}}',
        '{"execute": "nbd-server-remove", "arguments": {"name": "n"}}',
        '{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "x", "node-name": "n0"}}',
        '{"execute": "block-export-del", "arguments": {"id": "x"}}',
        '{"execute": "nbd-server-remove", "arguments": {"name": "x"}}',
        quit,
      ];
      const args = ['-blockdev', `driver=qcow2,node-name=n0,file.driver=file,file.filename=${dir}/X.qcow2`];
      const [q, b] = await both((p) => qmpTranscript(p, dir, [...BASE, '-S', ...args], requests));
      expect(b.lines).toEqual(q.lines);
    });
  });

  it('blockdev-change-medium: a new image in place of the old (tray events), read-only modes, a missing file and a fixed disk refused', async () => {
    await compare(
      (d) => ['-drive', `if=none,id=cd0,media=cdrom,file=${d}/X.qcow2,format=qcow2`, '-device', 'ide-cd,drive=cd0,id=cd', '-drive', `if=none,id=hd0,file=${d}/R.img,format=raw`, '-device', 'virtio-blk-pci,drive=hd0,id=vda'],
      (d) => [
        caps,
        JSON.stringify({ execute: 'blockdev-change-medium', arguments: { device: 'cd0', filename: `${d}/Y.qcow2`, format: 'qcow2' } }),
        '{"execute": "query-block"}',
        JSON.stringify({ execute: 'blockdev-change-medium', arguments: { id: 'cd', filename: `${d}/Z.qcow2`, 'read-only-mode': 'read-only' } }),
        JSON.stringify({ execute: 'blockdev-change-medium', arguments: { device: 'cd0', filename: `${d}/nope.qcow2` } }),
        JSON.stringify({ execute: 'blockdev-change-medium', arguments: { device: 'hd0', filename: `${d}/Y.qcow2`, format: 'qcow2' } }),
        '{"execute": "query-block"}',
        quit,
      ],
    );
  });

  it('a floppy takes a read-only medium in place of a writable one, and an empty one takes a read-only node (iotest 118)', async () => {
    await compare(
      (d) => [
        '-M', 'pc', '-drive', `if=none,id=fd0,file=${d}/R.img,format=raw`, '-device', 'floppy,drive=fd0,id=fl0,unit=0',
        '-drive', 'if=none,id=fd1', '-device', 'floppy,drive=fd1,id=fl1,unit=1',
        '-blockdev', `driver=qcow2,node-name=new,read-only=on,file.driver=file,file.filename=${d}/Z.qcow2`,
      ],
      (d) => [
        caps,
        JSON.stringify({ execute: 'blockdev-change-medium', arguments: { id: 'fl0', filename: `${d}/Y.qcow2`, format: 'qcow2', 'read-only-mode': 'read-only' } }),
        '{"execute": "blockdev-insert-medium", "arguments": {"id": "fl1", "node-name": "new"}}',
        '{"execute": "query-block"}',
        quit,
      ],
    );
  });

  it('x-blockdev-set-iothread refuses a node a device uses, even forced (iotest 202 moves nodes no device holds)', async () => {
    await compare(
      (d) => ['-object', 'iothread,id=io0', '-blockdev', `driver=qcow2,node-name=n0,file.driver=file,file.filename=${d}/X.qcow2`, '-device', 'virtio-blk-pci,drive=n0,id=vda',
        '-blockdev', `driver=qcow2,node-name=n1,file.driver=file,file.filename=${d}/Y.qcow2`],
      [
        caps,
        '{"execute": "x-blockdev-set-iothread", "arguments": {"node-name": "n0", "iothread": "io0"}}',
        '{"execute": "x-blockdev-set-iothread", "arguments": {"node-name": "n0", "iothread": "io0", "force": true}}',
        '{"execute": "x-blockdev-set-iothread", "arguments": {"node-name": "n1", "iothread": "io0"}}',
        quit,
      ],
    );
  });

  it("qom-set of a device's drive moves its BlockBackend to another node (tests/image-fleecing); a missing node is refused", async () => {
    await compare(
      (d) => [
        '-blockdev', `driver=qcow2,node-name=src,file.driver=file,file.filename=${d}/X.qcow2`,
        '-blockdev', `driver=qcow2,node-name=other,file.driver=file,file.filename=${d}/Y.qcow2`,
        '-device', 'virtio-scsi,id=s0', '-device', 'scsi-hd,id=sda,drive=src',
      ],
      [
        caps,
        // Not a storage device: no such property.
        '{"execute": "qom-set", "arguments": {"path": "/machine/peripheral/s0", "property": "drive", "value": "other"}}',
        '{"execute": "qom-set", "arguments": {"path": "/machine/peripheral/sda", "property": "drive", "value": "other"}}',
        '{"execute": "query-block"}',
        '{"execute": "qom-set", "arguments": {"path": "/machine/peripheral/sda", "property": "drive", "value": "nope"}}',
        '{"execute": "blockdev-del", "arguments": {"node-name": "src"}}',
        '{"execute": "blockdev-del", "arguments": {"node-name": "other"}}',
        quit,
      ],
    );
  });

  it('lists a -drive if=none attached to virtio-blk-pci with an id: device, qdev path, io-status and the inserted node', async () => {
    const t = await compare((d) => ['-drive', `if=none,id=drive0,file=${d}/X.qcow2`, '-device', 'virtio-blk-pci,drive=drive0,id=vda'], queryBlock);
    expect(t.lines[2]).toContain('"device": "drive0"');
    expect(t.lines[2]).toContain('"qdev": "/machine/peripheral/vda/virtio-backend"');
  });

  it('makes an anonymous BlockBackend for a -blockdev node a device names', async () => {
    const t = await compare((d) => ['-blockdev', `driver=file,filename=${d}/R.img,node-name=n`, '-device', 'virtio-blk-pci,drive=n'], queryBlock);
    expect(t.lines[2]).toContain('"device": ""');
    expect(t.lines[2]).toContain('"qdev": "/machine/peripheral-anon/device[0]/virtio-backend"');
  });

  it('lists empty drives (removable, no medium), an empty ide-cd with its tray, and the board-made IDE and floppy drives', async () => {
    const t = await compare(
      (d) => [
        '-drive', 'if=none', '-drive', 'if=none,media=cdrom', '-drive', 'if=ide,media=cdrom', '-drive', `if=none,file=${d}/R.img,format=raw`,
        '-drive', 'if=none,id=cd0,media=cdrom', '-device', 'ide-cd,drive=cd0', '-drive', `if=ide,file=${d}/R.img,format=raw`, '-drive', 'if=floppy',
        '-device', 'ide-cd,id=cd1',
      ],
      queryBlock,
    );
    for (const id of ['none0', 'none1', 'none2', 'ide0-cd0', 'ide0-hd1', 'floppy0', 'cd0']) expect(t.lines[2]).toContain(`"device": "${id}"`);
    expect(t.lines[2]).toContain('"qdev": "cd1"');
  });

  it('gives if=virtio drives their virtio-blk device after the -devices, and keeps the cache mode, detect-zeroes and read-only', async () => {
    const t = await compare(
      (d) => [
        '-drive', `file=${d}/R.img,if=virtio,format=raw,cache=writethrough,detect-zeroes=on`,
        '-drive', `file=${d}/X.qcow2,if=none,id=d,cache=none,read-only=on,node-name=top,file.node-name=proto`,
        '-device', 'virtio-scsi-pci', '-device', 'scsi-cd,drive=d,id=cd',
        '-drive', `file=null-co://,format=raw,if=none,id=nul`, '-device', 'virtio-blk-pci,drive=nul,write-cache=off',
      ],
      [caps, '{"execute": "query-block"}', '{"execute": "query-named-block-nodes"}', quit],
    );
    expect(t.lines[2]).toContain('"qdev": "/machine/peripheral-anon/device[2]/virtio-backend"');
  });

  it('opens file= pseudo-protocols and json: names, and warns when probing guessed raw', async () => {
    await compare(
      (d) => [
        '-drive', `file=${d}/R.img,if=none,id=probed`,
        '-drive', `file=blkdebug::${d}/X.qcow2,format=qcow2,if=none,id=dbg`,
        // The file name goes down through a format named for the file child (iotest 120).
        '-drive', `file=${d}/Y.qcow2,driver=raw,file.driver=qcow2,if=none,id=rawoverqcow2,read-only=on`,
        // blkdebug's image is a file name in turn (iotest 056).
        '-drive', 'file=blkdebug::null-co://,driver=blkdebug,align=65536,if=none,id=dbgnull',
        '-drive', `file=json:{"driver":"qcow2",,"file":{"driver":"file",,"filename":"${d}/Y.qcow2"}},if=none,id=j,read-only=on`,
        '-drive', `file=${d}/Z.qcow2,if=none,id=b,backing.driver=null-co,read-only=on`,
      ],
      queryBlock,
    );
  });

  it('names the backing files an image names by backing.node-name (no driver), down the chain', async () => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-f', 'qcow2', join(dir, 'base.qcow2'), '1M');
      await qemuImg('create', '-f', 'qcow2', '-b', join(dir, 'base.qcow2'), '-F', 'qcow2', join(dir, 'mid.qcow2'));
      await qemuImg('create', '-f', 'qcow2', '-b', join(dir, 'mid.qcow2'), '-F', 'qcow2', join(dir, 'top.qcow2'));
      const drive = `if=none,id=drive0,file=${dir}/top.qcow2,format=qcow2,node-name=top,backing.node-name=mid,backing.backing.node-name=base`;
      const names = '{"execute": "query-named-block-nodes", "arguments": {"flat": true}}';
      const [q, b] = await both((p) => qmpTranscript(p, dir, [...BASE, '-S', '-drive', drive], [caps, names, quit]));
      const view = (t: typeof q) => ({ code: t.code, stderr: t.stderr, names: [...t.lines.join('\n').matchAll(/"node-name": "([^"]+)"/g)].map((m) => generated(m[1]!)) });
      expect(view(b)).toEqual(view(q));
      expect(view(b).names).toEqual(expect.arrayContaining(['top', 'mid', 'base']));
    });
  });

  it('resolves a BlockBackend name where a command takes a device, names jobs after it, and runs HMP qemu-io on it', async () => {
    const hmp = (line: string) => JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': line } });
    const t = await compare(
      (d) => [
        '-drive', `if=none,id=drive0,file=${d}/X.qcow2`, '-device', 'virtio-blk-pci,drive=drive0,id=vda',
        '-blockdev', `driver=file,filename=${d}/Y.qcow2,node-name=tf`, '-blockdev', 'driver=qcow2,file=tf,node-name=tgt',
        '-drive', 'if=none,id=e', '-device', 'ide-cd,drive=e,id=cd',
      ],
      [
        caps,
        '{"execute": "block_resize", "arguments": {"device": "e", "size": 134217728}}',
        '{"execute": "block_resize", "arguments": {"device": "nope", "node-name": "nope", "size": 134217728}}',
        '{"execute": "block-dirty-bitmap-add", "arguments": {"node": "drive0", "name": "b0"}}',
        '{"execute": "block-dirty-bitmap-add", "arguments": {"node": "e", "name": "b0"}}',
        '{"execute": "query-block"}',
        '{"execute": "block-dirty-bitmap-remove", "arguments": {"node": "drive0", "name": "b0"}}',
        '{"execute": "block-stream", "arguments": {"device": "e"}}',
        // Rate-limited: still running when queried, and cancelled by quit.
        '{"execute": "blockdev-backup", "arguments": {"device": "drive0", "target": "tgt", "sync": "full", "speed": 65536}}',
        '{"execute": "query-block-jobs"}',
        hmp('qemu-io nope "read 0 512"'),
        hmp('qemu-io -d vda "read 0 512"'),
        hmp('qemu-io -d nope "read 0 512"'),
        hmp('qemu-io -d drive0 "read 0 512"'),
        // find_device_state also takes absolute QOM paths (tests/image-fleecing uses /machine/peripheral/sda).
        hmp('qemu-io -d /machine/peripheral/vda "read 0 512"'),
        hmp('qemu-io -d /machine/peripheral/vda/virtio-backend "read 0 512"'),
        hmp('qemu-io -d /machine/peripheral/cd "read 0 512"'),
        hmp('qemu-io -d /machine/peripheral/nope "read 0 512"'),
        hmp('qemu-io e "read 0 512"'),
        '{"execute": "query-blockstats"}',
        quit,
      ],
    );
    expect(t.lines.some((l) => l.includes('"id": "drive0"'))).toBe(true);
  });

  it('shows a device the node under the filter a job inserted without a name (and a named one as it is)', async () => {
    await withTempDir(async (dir) => {
      for (const f of ['X', 'Y']) await qemuImg('create', '-f', 'qcow2', join(dir, `${f}.qcow2`), '64M');
      await qemuImg('create', '-f', 'raw', join(dir, 'R.img'), '1M');
      const args = [
        '-drive', `if=none,id=drive0,file=${dir}/X.qcow2,node-name=src`, '-device', 'virtio-blk-pci,drive=drive0,id=vda',
        '-drive', `if=none,id=drive1,file=${dir}/R.img,format=raw,node-name=src1`, '-device', 'virtio-blk-pci,drive=drive1,id=vdb',
        '-blockdev', `driver=file,filename=${dir}/Y.qcow2,node-name=tf`, '-blockdev', 'driver=qcow2,file=tf,node-name=tgt',
        '-blockdev', 'driver=null-co,size=1048576,node-name=tgt1',
      ];
      const requests = [
        caps,
        // Rate-limited: still running when queried.
        '{"execute": "blockdev-mirror", "arguments": {"job-id": "m0", "device": "src", "target": "tgt", "sync": "full", "speed": 65536}}',
        '{"execute": "blockdev-mirror", "arguments": {"job-id": "m1", "device": "src1", "target": "tgt1", "sync": "full", "speed": 65536, "filter-node-name": "mf"}}',
        '{"execute": "query-block"}',
        quit,
      ];
      // Up to query-block's reply (quit's teardown of two jobs is another matter).
      const upTo = (lines: string[]) => lines.slice(0, lines.findIndex((l) => l.startsWith('{"return": [{')) + 1).map(generated);
      const [q, b] = await both(async (p) => upTo((await qmpTranscript(p, dir, [...BASE, '-S', ...args], requests)).lines));
      expect(b).toEqual(q);
      expect(b.at(-1)).toContain('"node-name": "src"');
      expect(b.at(-1)).toContain('"node-name": "mf"');
    });
  });

  it("HMP qemu-io writes through the drive's BlockBackend and prints to stdout, on both", async () => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-f', 'raw', join(dir, 'R.img'), '1M');
      const hmp = (line: string) => JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': line } });
      const out = await both(async (p) => {
        const child = spawnSystem(p, [...BASE, '-S', '-drive', `if=none,id=d0,file=${join(dir, 'R.img')},format=raw,node-name=rn`, '-device', 'virtio-blk-pci,drive=d0', '-qmp', 'stdio']);
        let stdout = '';
        const replies: string[] = [];
        child.stdout!.setEncoding('utf8');
        const next = () => new Promise<void>((r) => {
          const poll = () => (stdout.split('\n').filter((l) => l.startsWith('{"return"')).length > replies.length ? r() : child.stdout!.once('data', poll));
          poll();
        });
        child.stdout!.on('data', (d: string) => (stdout += d));
        for (const req of [caps, hmp('qemu-io d0 "write -P 0x5a 0 512"'), hmp('qemu-io rn "read -P 0x5a 0 512"')]) {
          child.stdin!.write(`${req}\n`);
          await next();
          replies.push(req);
        }
        child.stdin!.write(`${quit}\n`);
        await new Promise((r) => child.once('exit', r));
        return stdout.split('\n').filter((l) => !l.startsWith('{')).map((l) => l.replace(/; [\d:.]+ sec \(.*\)$/, '; TIME sec (RATE)'));
      });
      expect(out[1]).toEqual(out[0]);
      expect(out[1]).toContain('wrote 512/512 bytes at offset 0');
      expect(out[1]).toContain('read 512/512 bytes at offset 0');
    });
  });

  it('opens and closes trays, removes and inserts media, ejects, with DEVICE_TRAY_MOVED and the refusals as qemu-system', async () => {
    const x = (cmd: string, args: object) => JSON.stringify({ execute: cmd, arguments: args });
    const t = await compare(
      (d) => [
        '-drive', `if=none,id=cd0,media=cdrom,file=${d}/R.img,format=raw`, '-device', 'ide-cd,drive=cd0,id=cd',
        '-drive', 'if=none,id=e', '-device', 'ide-cd,drive=e',
        '-drive', `if=none,id=hd,file=${d}/X.qcow2`, '-device', 'virtio-blk-pci,drive=hd,id=vda',
        '-blockdev', `driver=file,filename=${d}/Y.qcow2,node-name=tf`,
      ],
      [
        caps,
        x('blockdev-open-tray', { id: 'cd' }),
        x('blockdev-remove-medium', { id: 'cd' }),
        '{"execute": "query-block"}',
        x('blockdev-insert-medium', { id: 'cd', 'node-name': 'tf' }),
        x('blockdev-close-tray', { id: 'cd' }),
        x('blockdev-insert-medium', { id: 'cd', 'node-name': 'tf' }),
        x('eject', { device: 'e' }),
        x('eject', { device: 'hd' }),
        x('blockdev-open-tray', { device: 'hd', id: 'x' }),
        x('blockdev-open-tray', { device: 'nope' }),
        x('blockdev-open-tray', { id: 'vda' }),
        x('blockdev-remove-medium', { id: 'cd' }),
        x('eject', { device: 'cd0' }),
        x('blockdev-close-tray', { device: 'cd0' }),
        '{"execute": "query-block"}',
        quit,
      ],
    );
    expect(t.lines.filter((l) => l.includes('DEVICE_TRAY_MOVED'))).toHaveLength(5);
  });

  const refusals: Array<(d: string) => string[]> = [
    () => ['-drive', 'if=none,id=a', '-drive', 'if=none,id=a'],
    (d) => ['-drive', 'if=none,id=a', '-blockdev', `driver=file,filename=${d}/R.img,node-name=a`],
    (d) => ['-drive', 'if=none,id=a', '-drive', `if=none,file=${d}/R.img,format=raw,node-name=a`],
    () => ['-drive', 'if=bogus'],
    () => ['-drive', 'if=none,cache=bogus'],
    () => ['-drive', 'if=none,media=foo'],
    (d) => ['-drive', `file=${d}/nonexist.img,if=none`],
    (d) => ['-drive', `file=${d}/R.img,if=none,format=raw,werror=bad`],
    (d) => ['-drive', `file=${d}/R.img,if=none,format=raw,rerror=enospc`],
    (d) => ['-drive', `file=${d}/R.img,if=none,format=raw,bogus=1`],
    (d) => ['-drive', `file=${d}/R.img,if=none,format=raw,file.bogus=1`],
    (d) => ['-drive', `file=${d}/R.img,if=none,format=qcow2`],
    (d) => ['-drive', `file=${d}/R.img,if=none,format=raw,driver=raw`],
    (d) => ['-drive', `file=${d}/R.img,if=none,format=raw,detect-zeroes=x`],
    (d) => ['-drive', `file=${d}/R.img,if=none,format=raw,aio=x`],
    () => ['-drive', 'if=none,id=1x'],
    (d) => ['-drive', `file=${d}/R.img,if=floppy,format=raw,werror=stop`],
    (d) => ['-drive', `file=${d}/R.img,format=raw,if=scsi`],
    (d) => ['-drive', `file=${d}/R.img,format=raw,if=ide,index=5`],
    () => ['-drive', 'if=ide'],
    () => ['-drive', 'if=virtio'],
    () => ['-device', 'virtio-blk-pci,drive=nope'],
    () => ['-device', 'virtio-blk-pci'],
    () => ['-device', 'ide-hd'],
    (d) => ['-drive', `if=none,id=d,file=${d}/R.img,format=raw`, '-device', 'virtio-blk-pci,drive=d', '-device', 'virtio-blk-pci,drive=d'],
    (d) => ['-blockdev', `driver=file,filename=${d}/R.img,node-name=n`, '-device', 'virtio-blk-pci,drive=n', '-device', 'virtio-blk-pci,drive=n'],
    (d) => ['-blockdev', `driver=file,filename=${d}/R.img,node-name=n`, '-device', 'virtio-blk-pci,drive=n,id=a', '-device', 'ide-hd,drive=n,id=a'],
    (d) => ['-drive', `if=none,id=d,file=${d}/R.img,format=raw`, '-device', 'scsi-hd,drive=d'],
    (d) => ['-drive', `file=${d}/R.img,format=raw,if=virtio`, '-device', 'virtio-blk-pci,drive=virtio0'],
    (d) => ['-drive', `if=none,id=d,file=${d}/R.img,format=raw,readonly=on`, '-device', 'ide-hd,drive=d'],
  ];
  it.each(refusals.map((f, i) => [i, f] as const))("refusal %i: QEMU's message and exit code", async (_i, f) => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-f', 'raw', join(dir, 'R.img'), '1M');
      const [q, b] = await both((p) => runSystem(p, [...BASE, '-S', ...f(dir)]));
      expect({ code: b.code, stderr: b.stderr }).toEqual({ code: q.code, stderr: q.stderr });
      expect(b.code).toBe(1);
    });
  });

  it('snapshot=on and -snapshot: the drive over a temporary overlay in $TMPDIR, the image untouched, the overlay gone at quit', async () => {
    const tmp = process.env['TMPDIR'];
    try {
      await withTempDir(async (dir) => {
        process.env['TMPDIR'] = dir;
        const hmp = (dev: string, cmd: string) => JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': `qemu-io ${dev} "${cmd}"` } });
        const requests = [caps, '{"execute": "query-block"}', hmp('d', 'write -P 0x55 0 64k'), hmp('e', 'write -P 0x66 0 64k'), hmp('d', 'read -P 0x55 0 64k'), quit];
        const args = ['-snapshot', '-drive', `if=none,id=d,file=${dir}/X.qcow2,format=qcow2`, '-drive', `if=none,id=e,file=${dir}/Y.qcow2,format=qcow2,snapshot=off`];
        // Each program starts from new images (the first one's writes would show in the second one's sizes).
        const fresh = async () => {
          for (const f of ['X', 'Y']) await qemuImg('create', '-f', 'qcow2', join(dir, `${f}.qcow2`), '64M');
        };
        const [q, b] = await both(async (p) => (await fresh(), await qmpTranscript(p, dir, [...BASE, '-S', ...args], requests)));
        const overlay = (t: typeof q) => ({ code: t.code, stderr: t.stderr, lines: t.lines.map((l) => generated(l).replace(/vl\.[0-9A-Za-z]{6}/g, 'vl.XXXXXX')) });
        expect(overlay(b)).toEqual(overlay(q));
        expect(b.lines.join('\n')).toContain(`${dir}/vl.`);
        // The snapshot drive's write went to the overlay; the other drive's to its image.
        expect((await qemuImg('compare', '-f', 'qcow2', '-F', 'qcow2', join(dir, 'X.qcow2'), join(dir, 'Y.qcow2'))).code).toBe(1);
        expect((await run('qemu-io', ['-c', 'read -P 0 0 64k', join(dir, 'X.qcow2')])).stdout).toMatch(/^read 65536\/65536/);
        expect((await readdir(dir)).filter((f) => f.startsWith('vl.'))).toEqual([]);
      });
    } finally {
      if (tmp === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = tmp;
    }
  });
});
