/**
 * max-connections: with a limit of 1, a second client is left waiting
 * (connected, but not greeted) until the first leaves, as
 * qemu-storage-daemon does by no longer accepting; and exports lose
 * CAN_MULTI_CONN. Checked on both daemons.
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OURS, startExportDaemon, type Daemon } from '../helpers/export-daemon.js';
import { NBD, NbdWire, infoPayload } from '../helpers/nbd-wire.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

/** Connects and collects what arrives; `bytes()` says how much came so far. */
async function rawClient(path: string): Promise<{ socket: Socket; bytes: () => number }> {
  for (let i = 0; ; i++) {
    const got: Buffer[] = [];
    const socket = await new Promise<Socket | undefined>((resolve) => {
      const s = connect(path);
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
      s.on('data', (d: Buffer) => got.push(d));
    });
    if (socket) return { socket, bytes: () => got.reduce((n, b) => n + b.length, 0) };
    if (i > 200) throw new Error(`cannot connect to ${path}`);
    await sleep(25);
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(10);
  return cond();
}

async function session(which: Daemon): Promise<unknown[]> {
  return withTempDir(async (dir) => {
    const img = join(dir, 'disk.qcow2');
    expect((await qemuImg('create', '-q', '-f', 'qcow2', img, '1M')).code).toBe(0);
    const d = await startExportDaemon(which, {
      dir,
      blockdevs: [`driver=file,node-name=f,filename=${img}`, 'driver=qcow2,node-name=disk,file=f'],
      nbdServer: `addr.type=unix,addr.path=${join(dir, 'nbd.sock')},max-connections=1`,
      exports: ['type=nbd,id=e0,node-name=disk,name=exp'],
    });
    const log: unknown[] = [];
    try {
      const a = await NbdWire.connect(d.nbdPath);
      await a.greeting();
      a.clientFlags(NBD.FLAG_C_FIXED_NEWSTYLE | NBD.FLAG_C_NO_ZEROES);
      a.option(NBD.OPT_GO, infoPayload('exp', []));
      await a.optionReplies();
      log.push(a.transcript.find((r) => r['info'] === 'EXPORT')?.['flagNames']);
      const b = await rawClient(d.nbdPath);
      log.push({ secondGreetedWhileFirstConnected: await waitFor(() => b.bytes() >= 18, 400) });
      await a.close();
      log.push({ secondGreetedAfterFirstLeft: await waitFor(() => b.bytes() >= 18, 3000) });
      b.socket.destroy();
    } finally {
      await d.quit();
    }
    return log;
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('nbd-server max-connections', () => {
  it('a client past the limit waits, unanswered, until one leaves; no CAN_MULTI_CONN', async () => {
    const theirs = await session('qsd');
    expect(theirs).toEqual([expect.not.arrayContaining(['CAN_MULTI_CONN']), { secondGreetedWhileFirstConnected: false }, { secondGreetedAfterFirstLeft: true }]);
    expect(await session(OURS)).toEqual(theirs);
  }, 30_000);
});
