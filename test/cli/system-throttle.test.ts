import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';
import { BASE, qemuSystem, qmpTranscript, runSystem, type SystemProg } from '../helpers/system.js';

/**
 * I/O limits on -drive BlockBackends (issue 17): -drive's throttling
 * options and their legacy names, block_set_io_throttle and query-block's
 * limit fields, compared with qemu-system-x86_64 7.2 line for line (the
 * generated node names normalised).
 */
const both = async <T>(f: (p: SystemProg) => Promise<T>): Promise<[T, T]> => [await f('qemu'), await f('blockemu')];
const caps = '{"execute": "qmp_capabilities"}';
const quit = '{"execute": "quit"}';
const queryBlock = '{"execute": "query-block"}';
const generated = (s: string) => s.replace(/#block\d+/g, '#blockN');
const setThrottle = (args: Record<string, unknown>) => JSON.stringify({ execute: 'block_set_io_throttle', arguments: { bps: 0, bps_rd: 0, bps_wr: 0, iops: 0, iops_rd: 0, iops_wr: 0, ...args } });

if (!qemuSystem.available || !qemu.available) {
  if (process.env['CI'] === 'true') throw new Error('qemu-system-x86_64 and qemu-img are needed in CI');
  console.warn('skipping system-throttle tests: qemu-system-x86_64 or qemu-img is not installed');
}

describe.skipIf(!qemuSystem.available || !qemu.available)('blockemu system I/O limits against qemu-system-x86_64', () => {
  const compare = (args: (dir: string) => string[], requests: string[] | ((dir: string) => string[])) =>
    withTempDir(async (dir) => {
      for (const f of ['X', 'Y', 'Y2']) await qemuImg('create', '-f', 'qcow2', join(dir, `${f}.qcow2`), '64M');
      const reqs = typeof requests === 'function' ? requests(dir) : requests;
      const [q, b] = await both((p) => qmpTranscript(p, dir, [...BASE, '-S', ...args(dir)], reqs));
      const norm = (t: typeof q) => ({ code: t.code, stderr: t.stderr, lines: t.lines.map(generated) });
      expect(norm(b)).toEqual(norm(q));
      return b;
    });

  it('shows -drive limits in query-block: legacy and QMP names, bursts with their lengths, the op size, the group (default: the drive id)', async () => {
    const t = await compare(
      (d) => [
        '-drive', `if=none,id=d0,file=${d}/X.qcow2,bps_rd=100,bps_rd_max=200,throttling.bps-read-max-length=3,iops=10,iops_size=512`,
        '-drive', `if=none,id=d1,file=${d}/Y.qcow2,throttling.bps-total=4096,throttling.iops-write=7,throttling.iops-write-max=70,group=g`,
        '-drive', 'if=none,id=e',
        '-drive', 'if=none,id=n,file=null-co://,format=raw',
        // QEMU_OPT_NUMBER is strtoull's base 0: hex and octal.
        '-drive', 'if=none,id=h,file=null-co://,format=raw,bps=0x10,iops_rd=010',
      ],
      [caps, queryBlock, quit],
    );
    expect(t.lines[2]).toContain('"group": "d0"');
    expect(t.lines[2]).toContain('"group": "g"');
  });

  it('shares one group: the limits set through one member are every member\'s, and a group a drive made refuses an object of its name', async () => {
    await compare(
      (d) => ['-drive', `if=none,id=d0,file=${d}/X.qcow2,iops=100,group=g`, '-drive', `if=none,id=d1,file=${d}/Y.qcow2,bps=1000,group=g`],
      [
        caps,
        queryBlock,
        setThrottle({ device: 'd0', iops_rd: 50, iops_rd_max: 60 }),
        queryBlock,
        '{"execute": "object-add", "arguments": {"qom-type": "throttle-group", "id": "g"}}',
        '{"execute": "object-add", "arguments": {"qom-type": "throttle-group", "id": "h", "limits": {"bps-total": 555}}}',
        // A move into the object's group takes its limits only to replace them with the ones given.
        setThrottle({ device: 'd1', group: 'h', bps: 4096 }),
        queryBlock,
        '{"execute": "qom-get", "arguments": {"path": "h", "property": "limits"}}',
        '{"execute": "object-del", "arguments": {"id": "h"}}',
        quit,
      ],
    );
  });

  it('block_set_io_throttle enables, changes, moves and disables limits; by device id the default group is the id', async () => {
    await compare(
      (d) => ['-drive', `if=none,id=d0,file=${d}/X.qcow2`, '-device', 'virtio-blk-pci,drive=d0,id=vda', '-drive', `if=none,id=d1,file=${d}/Y.qcow2`],
      [
        caps,
        setThrottle({ id: 'vda', bps: 1000, bps_max: 2000, bps_max_length: 5 }),
        setThrottle({ device: 'd1', iops: 20 }),
        queryBlock,
        setThrottle({ device: 'd1', iops: 30, group: 'vda', iops_size: 4096 }),
        queryBlock,
        setThrottle({ device: 'd0' }),
        queryBlock,
        setThrottle({ device: 'd1' }),
        queryBlock,
        quit,
      ],
    );
  });

  it("block_set_io_throttle's errors: QEMU's classes and words", async () => {
    await compare(
      (d) => ['-drive', `if=none,id=d0,file=${d}/X.qcow2`, '-drive', 'if=none,id=e'],
      [
        caps,
        setThrottle({ device: 'nope', bps: 1 }),
        setThrottle({ id: 'nope', bps: 1 }),
        setThrottle({ bps: 1 }),
        setThrottle({ device: 'd0', id: 'x', bps: 1 }),
        setThrottle({ device: 'e', bps: 1 }),
        setThrottle({ device: 'd0', bps: -1 }),
        setThrottle({ device: 'd0', bps: 1, bps_rd: 1 }),
        setThrottle({ device: 'd0', bps_max: 10 }),
        setThrottle({ device: 'd0', bps: 10, bps_max: 5 }),
        setThrottle({ device: 'd0', bps: 10, bps_max_length: 0 }),
        setThrottle({ device: 'd0', bps: 10, bps_max_length: 2 }),
        setThrottle({ device: 'd0', iops_size: 10 }),
        setThrottle({ device: 'd0', bps: 10, bps_max: 1000000, bps_max_length: 1000000000000 }),
        JSON.stringify({ execute: 'block_set_io_throttle', arguments: { device: 'd0', bps: 1 } }),
        queryBlock,
        quit,
      ],
    );
  });

  it('keeps the limits with the BlockBackend when a snapshot becomes its root (iotest 096)', async () => {
    await compare(
      (d) => ['-drive', `if=none,id=d0,file=${d}/X.qcow2,node-name=base,throttling.group=mygroup,throttling.iops-total=6000,throttling.iops-size=1024`],
      (d) => [
        caps,
        JSON.stringify({ execute: 'blockdev-snapshot-sync', arguments: { 'node-name': 'base', 'snapshot-node-name': 'target', 'snapshot-file': `${d}/T.qcow2`, format: 'qcow2' } }),
        queryBlock,
        quit,
      ],
    );
  });

  it("keeps the limits through an eject and a new medium; a device's anonymous BlockBackend is throttled by its id", async () => {
    await compare(
      (d) => ['-drive', `if=none,id=cd,media=cdrom,file=${d}/X.qcow2,format=qcow2,iops_rd=5`, '-device', 'ide-cd,drive=cd,id=cdrom', '-blockdev', `driver=file,filename=${d}/Y.qcow2,node-name=y`, '-device', 'virtio-blk-pci,drive=y,id=vdb'],
      (d) => [
        caps,
        '{"execute": "eject", "arguments": {"device": "cd"}}',
        queryBlock,
        setThrottle({ device: 'cd', iops: 1 }),
        JSON.stringify({ execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': 'new', file: { driver: 'file', filename: `${d}/Y2.qcow2` } } }),
        '{"execute": "blockdev-insert-medium", "arguments": {"id": "cdrom", "node-name": "new"}}',
        setThrottle({ id: 'vdb', bps_wr: 65536 }),
        setThrottle({ id: '/machine/peripheral/vdb/virtio-backend', bps_wr: 65536 }),
        setThrottle({ id: '/machine/peripheral/vdb/virtio-backend', iops_wr: 9, group: 'cd' }),
        queryBlock,
        quit,
      ],
    );
  });

  const refusals: Array<(d: string) => string[]> = [
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,bps=-1`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,bps=abc`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,throttling.iops-size=1x`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,bps=100,throttling.bps-total=5`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,group=a,throttling.group=b`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,readonly=on,read-only=on`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,throttling.bps-total=10,bps_rd=5`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,iops_max=10,iops_wr_max=10`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,iops_size=10`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,bps_max=10`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,bps=10,bps_max=5`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,bps=10,throttling.bps-total-max-length=0`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,bps=10,throttling.bps-total-max-length=5`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,iops=10,iops_max=100,throttling.iops-total-max-length=99999999999999`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,bps=1000000000000001`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,bps=0x10,detect-zeroes=xx`],
    // The limits are checked before the image opens.
    (d) => ['-drive', `if=none,file=${d}/missing.qcow2,bps_max=10`],
    (d) => ['-drive', `if=none,file=${d}/X.qcow2,throttling.bps-foo=1`],
  ];
  it.each(refusals.map((f, i) => [i, f] as const))("refusal %i: QEMU's message and exit code", async (_i, f) => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-f', 'qcow2', join(dir, 'X.qcow2'), '1M');
      const [q, b] = await both((p) => runSystem(p, [...BASE, '-S', ...f(dir)]));
      expect({ code: b.code, stderr: b.stderr }).toEqual({ code: q.code, stderr: q.stderr });
      expect(b.code).toBe(1);
    });
  });
});
