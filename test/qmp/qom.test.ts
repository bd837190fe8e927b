/**
 * QOM objects (object-add, object-del, qom-*, --object) and throttle
 * nodes, played on qemu-storage-daemon and on blockemu: equal replies
 * word for word (refusals, property lists in QEMU's hash-table order,
 * values), equal node info, and Proxmox's start-up of a throttled disk
 * (QSD.pm: --daemonize and --pidfile, a throttle-group, throttle → qcow2 →
 * file, new limits by qom-set, a snapshot, quit).
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/qmp/client.js';
import { normalise, outcome } from '../helpers/export-daemon.js';
import { compareSessions, file, type Step } from '../helpers/qmp-session.js';
import { BLOCKEMU, qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';

const add = (args: Record<string, unknown>): Step => ['object-add', args];
const qomSet = (path: string, property: string, value: unknown): Step => ['qom-set', { path, property, value }];
const qomGet = (path: string, property: string): Step => ['qom-get', { path, property }];
const qomList = (path: string): Step => ['qom-list', { path }];
const noImages = async () => {};

describe.skipIf(!qemu.available || !qemu.storageDaemon)('QOM objects, as qemu-storage-daemon has them', () => {
  it("throttle-group: QEMU's checks of each property and of the whole, qom-get/qom-set, paths, deletion", async () => {
    await compareSessions(noImages, [
      qomList('/'),
      add({ 'qom-type': 'throttle-group', id: 'tg0', 'x-iops-total': -1 }),
      add({ 'qom-type': 'throttle-group', id: 'tg0', 'x-iops-total': 10, 'x-iops-read': 5 }),
      add({ 'qom-type': 'throttle-group', id: 'tg0', 'x-iops-total-max-length': 5000000000 }),
      add({ 'qom-type': 'throttle-group', id: 'tg0', 'x-bps-total-max': 10, 'x-bps-total': 20 }),
      add({ 'qom-type': 'throttle-group', id: 'tg0', 'x-bps-write-max-length': 3 }),
      add({ 'qom-type': 'throttle-group', id: 'tg0', 'x-iops-size': 4096 }),
      add({ 'qom-type': 'throttle-group', id: 'tg0', limits: { 'iops-total': -5 } }),
      add({ 'qom-type': 'throttle-group', id: 'tg0', limits: { 'bps-total-max': 10, 'bps-total-max-length': 1000000000000000 } }),
      add({ 'qom-type': 'throttle-group', id: 'tg0', limits: { 'iops-total': 10 }, 'x-iops-total': 20 }),
      add({ 'qom-type': 'throttle-group', id: 'tg0', limits: { 'iops-total': 10 } }),
      qomGet('tg0', 'x-iops-total'),
      qomSet('tg0', 'x-iops-total', 5),
      qomSet('tg0', 'limits', { 'iops-total': 'a' }),
      qomSet('tg0', 'limits', { 'bps-read': 1, 'bps-total': 2 }),
      qomSet('tg0', 'limits', 5),
      qomSet('tg0', 'limits', { 'bps-total': 1000000, 'bps-total-max': 2000000, 'bps-total-max-length': 10, 'iops-size': 8192 }),
      qomGet('/objects/tg0', 'limits'),
      qomSet('tg0', 'nope', 5),
      qomSet('tg0', 'type', 'x'),
      qomGet('tg0', 'type'),
      qomGet('/objects', 'tg0'),
      qomGet('/objects', 'type'),
      qomGet('/nope', 'type'),
      qomList('objects'),
      qomList(''),
      qomList('/objects/tg0'),
      ['qom-list-properties', { typename: 'throttle-group' }],
      ['object-del', { id: 'tg0' }],
      ['object-del', { id: 'tg0' }],
      qomList('/objects'),
    ]);
  }, 60_000);

  it('secret, iothread, main-loop; the types QEMU lacks, ids, duplicates; qom-list-types', async () => {
    await compareSessions(
      async (dir) => {
        await run('sh', ['-c', `printf 'from a file' > ${join(dir, 'pw')}`]);
      },
      [
        add({ 'qom-type': 'iothread', id: 'io0' }),
        add({ 'qom-type': 'secret', id: 's0', data: 'aGVsbG8=', format: 'base64' }),
        add({ 'qom-type': 'secret', id: 's-file', file: '${DIR}/pw' }),
        qomList('/objects'),
        qomList('/objects/io0'),
        qomList('/objects/s0'),
        qomGet('/objects/s0', 'data'),
        qomGet('/objects/s0', 'format'),
        qomGet('/objects/s0', 'loaded'),
        qomGet('/objects/s0', 'keyid'),
        qomGet('/objects/s-file', 'file'),
        qomGet('/objects/io0', 'poll-max-ns'),
        qomGet('/objects/io0', 'thread-id'),
        qomSet('/objects/io0', 'poll-max-ns', 1000),
        qomGet('/objects/io0', 'poll-max-ns'),
        qomList('/'),
        ['qom-list-properties', { typename: 'secret' }],
        ['qom-list-properties', { typename: 'iothread' }],
        ['qom-list-properties', { typename: 'main-loop' }],
        ['qom-list-properties', { typename: 'nope' }],
        ['object-del', { id: 's0' }],
        ['object-del', { id: 's0' }],
        add({ 'qom-type': 'iothread', id: 'io0' }),
        add({ 'qom-type': 'iothread', id: '9bad' }),
        add({ 'qom-type': 'can-bus', id: 'cb' }),
        add({ 'qom-type': 'memory-backend-ram', id: 'm', size: 1024 }),
        add({ 'qom-type': 'sev-guest', id: 'sg' }),
        add({ 'qom-type': 'authz-listfile', id: 'a', filename: '/x' }),
        add({ 'qom-type': 'secret', id: 's1' }),
        add({ 'qom-type': 'secret', id: 's1', data: 'x', file: '${DIR}/pw' }),
        add({ 'qom-type': 'secret', id: 's1', file: '${DIR}/nonexist' }),
        add({ 'qom-type': 'secret', id: 's1', data: '!!', format: 'base64' }),
        add({ 'qom-type': 'secret', id: 's1', data: 'x', keyid: 'nope' }),
        add({ 'qom-type': 'secret', id: 's1', data: 'x', keyid: 's-file' }),
        add({ 'qom-type': 'main-loop', id: 'ml' }),
        add({ 'qom-type': 'main-loop', id: 'ml2' }),
        add({ 'qom-type': 'iothread', id: 'io9', 'poll-max-ns': -3 }),
        add({ 'qom-type': 'iothread', id: 'io9', 'thread-pool-min': 100, 'thread-pool-max': 10 }),
        ['qom-list-types'],
        ['qom-list-types', { abstract: true }],
        ['qom-list-types', { implements: 'user-creatable' }],
        ['qom-list-types', { implements: 'secret_common', abstract: true }],
        ['qom-list-types', { implements: 'event-loop-base' }],
      ],
    );
  }, 60_000);

  it("throttle nodes: QEMU's refusals, a json: name with the group, the group in use, new limits, a snapshot below, reopen into another group", async () => {
    await compareSessions(
      async (dir) => {
        await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 't.qcow2'), '1M');
      },
      [
        add({ 'qom-type': 'throttle-group', id: 'tg0', limits: { 'iops-total': 1000, 'bps-total': 10000000 } }),
        ['blockdev-add', { driver: 'throttle', 'node-name': 'th', 'throttle-group': 'tg0', file: { driver: 'qcow2', 'node-name': 'q', file: file('t.qcow2') } }],
        ['blockdev-add', { driver: 'throttle', 'node-name': 'th2', 'throttle-group': 'nope', file: 'q' }],
        ['blockdev-add', { driver: 'throttle', 'node-name': 'th2', file: 'q' }],
        ['object-del', { id: 'tg0' }],
        ['query-named-block-nodes', { flat: true }],
        qomSet('tg0', 'limits', { 'iops-total': 50 }),
        ['blockdev-snapshot-sync', { 'node-name': 'q', 'snapshot-file': '${DIR}/snap.qcow2', 'snapshot-node-name': 'snap', format: 'qcow2' }],
        ['query-named-block-nodes', { flat: true }],
        ['blockdev-reopen', { options: [{ driver: 'throttle', 'node-name': 'th', 'throttle-group': 'nope', file: 'snap' }] }],
        add({ 'qom-type': 'throttle-group', id: 'tg1' }),
        ['blockdev-reopen', { options: [{ driver: 'throttle', 'node-name': 'th', 'throttle-group': 'tg1', file: 'snap' }] }],
        ['query-named-block-nodes', { flat: true }],
        ['object-del', { id: 'tg1' }],
        ['object-del', { id: 'tg0' }],
        ['blockdev-del', { 'node-name': 'th' }],
        ['object-del', { id: 'tg1' }],
      ],
    );
  }, 60_000);

  it('--object on the command line: objects made in order, refusals as qemu-storage-daemon prints them', async () => {
    for (const arg of [
      'throttle-group,id=tg0,x-iops-total=-1',
      'throttle-group,id=tg0,limits.iops-total=10,limits.iops-read=5',
      'nope,id=x',
      'throttle-group',
      'iothread,id=i,poll-max-ns=abc',
      '{"qom-type": "throttle-group", "id": "t", "limits": {"bps-total": -1}}',
    ]) {
      const args = ['--object', arg, '--object', 'bad'];
      const q = await run('qemu-storage-daemon', args);
      const b = await run(process.execPath, [BLOCKEMU, 'daemon', ...args]);
      expect({ arg, code: b.code, stderr: b.stderr.replace('blockemu daemon', 'qemu-storage-daemon') }).toEqual({ arg, code: q.code, stderr: q.stderr });
    }
  }, 60_000);

  it("Proxmox's throttled disk (QSD.pm): --daemonize, a group, throttle over qcow2, qom-set, a snapshot, quit", async () => {
    const play = (prog: string[]) =>
      withTempDir(async (dir) => {
        await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'vm-disk.qcow2'), '4M');
        const sock = join(dir, 'qmp.sock');
        const pid = join(dir, 'qsd.pid');
        const started = await run(prog[0]!, [...prog.slice(1), '--daemonize', '--pidfile', pid, '--chardev', `socket,id=qmp,path=${sock},server=on,wait=off`, '--monitor', 'chardev=qmp']);
        expect(started.code).toBe(0);
        const daemonPid = Number((await readFile(pid, 'utf8')).trim());
        const c = await QmpClient.connect(sock);
        const log: unknown[] = [];
        const step = async (cmd: string, args?: Record<string, unknown>) => log.push(normalise(await outcome(c, dir, cmd, args), dir));
        await step('object-add', { 'qom-type': 'throttle-group', id: 'throttle-drive-scsi0', limits: {} });
        await step('blockdev-add', {
          driver: 'throttle',
          'node-name': 'drive-scsi0',
          'throttle-group': 'throttle-drive-scsi0',
          file: { driver: 'qcow2', 'node-name': 'fmt-scsi0', 'read-only': false, file: { driver: 'file', filename: join(dir, 'vm-disk.qcow2'), 'node-name': 'file-scsi0', 'aio': 'threads', cache: { direct: false, 'no-flush': false } } },
        });
        await step('qom-set', { path: 'throttle-drive-scsi0', property: 'limits', value: { 'bps-total': 10485760, 'iops-total': 100, 'bps-total-max': 20971520, 'bps-total-max-length': 5 } });
        await step('qom-get', { path: 'throttle-drive-scsi0', property: 'limits' });
        await step('blockdev-snapshot-sync', { 'node-name': 'fmt-scsi0', 'snapshot-file': join(dir, 'snap1.qcow2'), 'snapshot-node-name': 'fmt-snap1', format: 'qcow2' });
        await step('query-named-block-nodes', { flat: true });
        await step('quit');
        await c.close();
        for (let i = 0; i < 200 && (await access(pid).then(() => true, () => false)); i++) await sleep(25);
        log.push({ pidfileLeft: await access(pid).then(() => true, () => false), alive: isAlive(daemonPid) });
        log.push((await qemuImg('check', join(dir, 'snap1.qcow2'))).stdout.replaceAll(dir, '${DIR}'));
        return JSON.parse(JSON.stringify(log).replace(/#block\d+/g, '#block'));
      });
    const theirs = await play(['qemu-storage-daemon']);
    const ours = await play([process.execPath, BLOCKEMU, 'daemon']);
    expect(ours).toEqual(theirs);
  }, 60_000);
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
