import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';
import { BASE, qemuSystem, qmpTranscript, type SystemProg, type Transcript } from '../helpers/system.js';

/**
 * device_add and device_del on `blockemu system`, compared with
 * qemu-system-x86_64 7.2 under the same command line. The machine starts
 * paused (-S) so the guest's firmware does not run: under tcg it would
 * reset the machine and program virtio-blk's write cache at its own pace.
 * A SCSI device's DEVICE_DELETED comes after device_del's reply, racing
 * with the next one in QEMU, so replies and events are compared as two
 * sequences (each in order).
 */
const caps = '{"execute": "qmp_capabilities"}';
const quit = '{"execute": "quit"}';
const add = (args: Record<string, unknown>) => JSON.stringify({ execute: 'device_add', arguments: args });
const del = (id: string) => JSON.stringify({ execute: 'device_del', arguments: { id } });
const cmd = (execute: string, args?: Record<string, unknown>) => JSON.stringify(args ? { execute, arguments: args } : { execute });
const waitDeleted = '{"wait": "DEVICE_DELETED"}';

if (!qemuSystem.available || !qemu.available) {
  if (process.env['CI'] === 'true') throw new Error('qemu-system-x86_64 and qemu-img are needed in CI');
  console.warn('skipping hotplug tests: qemu-system-x86_64 or qemu-img is not installed');
}

const split = (t: Transcript) => ({
  code: t.code,
  stderr: t.stderr,
  replies: t.lines.filter((l) => !l.startsWith('{"event"')),
  events: t.lines.filter((l) => l.startsWith('{"event"')),
});

describe.skipIf(!qemuSystem.available || !qemu.available)('device_add and device_del against qemu-system-x86_64', () => {
  const compare = (args: (dir: string) => string[], requests: string[]) =>
    withTempDir(async (dir) => {
      await qemuImg('create', '-f', 'qcow2', join(dir, 'X.qcow2'), '1M');
      const run = (p: SystemProg) => qmpTranscript(p, dir, [...BASE, '-S', ...args(dir)], [caps, ...requests, quit]);
      const q = split(await run('qemu'));
      const b = split(await run('blockemu'));
      expect(b).toEqual(q);
      return b;
    });
  const node = (d: string) => ['-blockdev', `file,filename=${d}/X.qcow2,node-name=f`, '-blockdev', 'qcow2,file=f,node-name=n0'];

  it("refuses what qdev refuses, in QEMU's words: ids, models, buses, drives, permissions", async () => {
    const t = await compare(
      (d) => [...node(d), '-device', 'virtio-scsi,id=scsi0', '-device', 'ide-hd,id=i0,drive=n0,share-rw=on'],
      [
        add({ driver: 'virtio-blk', id: 'd0', drive: 'n0', 'share-rw': true }),
        add({ driver: 'virtio-blk', id: 'd0', drive: 'n0' }),
        add({ driver: 'scsi-cd', id: 'i0' }),
        add({ driver: 'virtio-blk', id: 'd1', drive: 'n0' }),
        add({ driver: 'scsi-hd', id: 'd2', drive: 'n0' }),
        add({ driver: 'foo', id: 'd3' }),
        add({ driver: 'scsi-hd', id: 'd4', drive: 'nope' }),
        add({ driver: 'virtio-blk-pci', id: 'd5', drive: 'nope' }),
        add({ driver: 'ide-hd', id: 'd6', drive: 'n0' }),
        add({ driver: 'scsi-hd', id: 'd7', drive: 'n0', bus: 'nobus.0' }),
        add({ driver: 'virtio-scsi-pci', id: 'd7', bus: 'scsi0.0' }),
        add({ driver: 'virtio-blk-device', id: 'd7' }),
        add({ driver: 'scsi-hd', id: 'd8' }),
        add({ driver: 'floppy', id: 'd9' }),
        add({ id: 'd10' }),
        add({ driver: 'scsi-cd', id: '1bad' }),
        add({ driver: 'scsi-cd', drive: 5 }),
        add({ driver: 'scsi-hd', drive: 'n0', 'share-rw': 'maybe' }),
        add({ driver: 'scsi-cd', id: 7 }),
        cmd('query-block'),
        del('i0'),
        del('nothere'),
      ],
    );
    expect(t.replies).toContain(`{"error": {"class": "GenericError", "desc": "Duplicate device ID 'd0'"}}`);
    expect(t.replies).toContain(`{"error": {"class": "DeviceNotFound", "desc": "Device 'nothere' not found"}}`);
  });

  it('unplugs a SCSI device at once and a PCI one at the next reset, each with its DEVICE_DELETED (a virtio-backend first)', async () => {
    const t = await compare(
      (d) => [...node(d), '-device', 'virtio-scsi,id=scsi0'],
      [
        add({ driver: 'virtio-blk', id: 'v0', drive: 'n0' }),
        add({ driver: 'scsi-cd', id: 'cd0' }),
        del('cd0'),
        waitDeleted,
        del('v0'),
        del('v0'),
        del('/machine/peripheral/v0'),
        cmd('query-block'),
        cmd('system_reset'),
        waitDeleted,
        waitDeleted,
        cmd('query-block'),
        // The node is free again; the host adapter goes with its disks, the newest first.
        add({ driver: 'scsi-hd', id: 's0', drive: 'n0', 'share-rw': true }),
        add({ driver: 'scsi-hd', drive: 'n0', 'share-rw': 'on' }),
        del('scsi0'),
        cmd('system_reset'),
        waitDeleted,
        waitDeleted,
        waitDeleted,
        waitDeleted,
        cmd('query-block'),
      ],
    );
    expect(t.events).toContain('{"event": "DEVICE_DELETED", "data": {"path": "/machine/peripheral/v0/virtio-backend"}}');
    expect(t.events.at(-2)).toBe('{"event": "DEVICE_DELETED", "data": {"device": "scsi0", "path": "/machine/peripheral/scsi0"}}');
  });

  it("deletes a -drive's BlockBackend (and its nodes) with its device; a -blockdev node stays and attaches again", async () => {
    await compare(
      (d) => [...node(d), '-drive', `if=none,id=dr,file=${d}/X.qcow2,file.locking=off,node-name=dn`, '-device', 'virtio-scsi,id=scsi0', '-device', 'scsi-hd,id=s0,drive=dr'],
      [
        add({ driver: 'scsi-hd', id: 's1', drive: 'n0' }),
        del('s0'),
        waitDeleted,
        del('s1'),
        waitDeleted,
        cmd('query-block'),
        cmd('query-named-block-nodes', { flat: true }),
        add({ driver: 'scsi-hd', id: 's0', drive: 'dr' }),
        add({ driver: 'scsi-hd', id: 's1', drive: 'n0' }),
        cmd('query-block'),
      ],
    );
  });

  it("cancels the jobs on a -drive's medium when the drive goes with its device", async () => {
    await withTempDir(async (dir) => {
      // Data to copy, so that the stream is held by its speed when the device goes.
      await qemuImg('create', '-f', 'qcow2', join(dir, 'B.qcow2'), '4M');
      await qemuIo('-c', 'write 0 4M', join(dir, 'B.qcow2'));
      await qemuImg('create', '-f', 'qcow2', '-b', join(dir, 'B.qcow2'), '-F', 'qcow2', join(dir, 'T.qcow2'));
      const args = ['-drive', `if=none,id=dr,file=${dir}/T.qcow2`, '-device', 'virtio-scsi,id=scsi0', '-device', 'scsi-hd,id=s0,drive=dr'];
      const requests = [caps, cmd('block-stream', { device: 'dr', speed: 1 }), del('s0'), waitDeleted, cmd('query-block-jobs'), cmd('query-block'), quit];
      // How far the stream got before it was cancelled depends on timing.
      const run = async (p: SystemProg) => {
        const t = await qmpTranscript(p, dir, [...BASE, '-S', ...args], requests);
        return split({ ...t, lines: t.lines.map((l) => l.replace(/("offset": )\d+/, '$1N')) });
      };
      const q = await run('qemu');
      const b = await run('blockemu');
      expect(b).toEqual(q);
      // The unplug drains the drive (the job pauses and resumes), then the job is cancelled and ends before DEVICE_DELETED.
      expect(b.events.map((e) => /"(?:event|status)": "([^"]+)"/.exec(e.replace(/^\{"event": "JOB_STATUS_CHANGE", "data": \{/, '{'))?.[1])).toEqual([
        'created', 'running', 'paused', 'running', 'aborting', 'BLOCK_JOB_CANCELLED', 'concluded', 'null', 'DEVICE_DELETED', 'SHUTDOWN',
      ]);
    });
  });

  it('keeps a node in the iothread of the first SCSI adapter that uses it until that device goes', async () => {
    await compare(
      (d) => [...node(d), '-object', 'iothread,id=io0', '-object', 'iothread,id=io1'],
      [
        add({ driver: 'virtio-scsi', id: 'scsi0', iothread: 'nope' }),
        add({ driver: 'virtio-scsi', id: 'scsi0', iothread: 'n0' }),
        add({ driver: 'virtio-scsi', id: 'scsi0', iothread: 'io0' }),
        add({ driver: 'virtio-scsi', id: 'scsi1', iothread: 'io1' }),
        add({ driver: 'scsi-hd', id: 'h0', drive: 'n0', bus: 'scsi0.0', 'share-rw': true }),
        add({ driver: 'scsi-hd', id: 'h1', drive: 'n0', bus: 'scsi1.0', 'share-rw': true }),
        del('h0'),
        waitDeleted,
        add({ driver: 'scsi-hd', id: 'h1', drive: 'n0', bus: 'scsi1.0' }),
        cmd('query-block'),
      ],
    );
  });

  it("refuses q35's PCIe root bus, IDE and floppy, and plugs into a PCIe root port, unplugged at the next reset", async () => {
    await compare(
      (d) => ['-M', 'q35', ...node(d), '-device', 'pcie-root-port,id=rp0,chassis=1'],
      [
        add({ driver: 'virtio-blk-pci', id: 'v1', drive: 'n0' }),
        add({ driver: 'ide-hd', id: 'i1', drive: 'n0' }),
        add({ driver: 'floppy', id: 'f' }),
        add({ driver: 'scsi-hd', id: 's', drive: 'n0', bus: 'rp0' }),
        add({ driver: 'scsi-hd', id: 's', drive: 'n0', bus: 'pcie.0' }),
        add({ driver: 'pcie-root-port', id: 'rp1', chassis: 2 }),
        add({ driver: 'virtio-blk-pci', id: 'v1', drive: 'n0', bus: 'rp0' }),
        del('v1'),
        del('v1'),
        cmd('system_reset'),
        waitDeleted,
        waitDeleted,
        cmd('query-block'),
      ],
    );
  });
});
