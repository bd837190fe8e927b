/**
 * The NBD server on the wire, against QEMU 7.2: each scenario scripts one
 * raw NBD session (handshake options, transmission requests, malformed
 * messages included) against qemu-storage-daemon and against blockemu run
 * with the same command line on an identical fresh image, and compares the
 * two transcripts whole (every byte the server sent, decoded).
 *
 * Daemons are shared by the scenarios of a describe (they run in order, the
 * same on both sides); scenarios that write use their own regions.
 *
 * NBD_WIRE_PEER=qsd compares qemu-storage-daemon with itself (a check that
 * nothing nondeterministic leaks into the transcripts); NBD_WIRE_DUMP=DIR
 * writes both transcripts of each scenario to DIR as JSON.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/qmp/client.js';
import { infoPayload, metaPayload, NBD, NbdWire, type RequestOpts, str32, u16b, u32b, type WireRecord } from '../helpers/nbd-wire.js';
import { BLOCKEMU, qemu, qemuImg, qemuIo } from '../helpers/qemu.js';

type Which = 'qsd' | 'blockemu';
const PEER: Which = process.env['NBD_WIRE_PEER'] === 'qsd' ? 'qsd' : 'blockemu';

const KiB = 1024;
const MiB = 1024 * 1024;

// ---- daemons ------------------------------------------------------------

interface Daemon {
  which: Which;
  proc: ChildProcess;
  qmp: QmpClient;
  nbdSock: string;
  stderr: () => string;
}

interface Setup {
  /** --blockdev values (node `disk` is exported). */
  blockdevs: (image: string) => string[];
  /** --export values. */
  exports: string[];
  /** Makes the image. */
  image: (path: string) => Promise<void>;
  /** QMP commands run on both daemons once they are up. */
  qmp?: [string, Record<string, unknown>][];
}

async function startDaemon(which: Which, dir: string, setup: Setup, image: string): Promise<Daemon> {
  const nbdSock = join(dir, 'nbd.sock');
  const qmpSock = join(dir, 'qmp.sock');
  const args = [
    ...setup.blockdevs(image).flatMap((b) => ['--blockdev', b]),
    '--nbd-server',
    `addr.type=unix,addr.path=${nbdSock}`,
    ...setup.exports.flatMap((e) => ['--export', e]),
    '--chardev',
    `socket,id=m,path=${qmpSock},server=on,wait=off`,
    '--monitor',
    'chardev=m',
  ];
  const proc = which === 'qsd' ? spawn('qemu-storage-daemon', args, { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(process.execPath, [BLOCKEMU, 'daemon', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (d: string) => {
    if (err.length < 64 * KiB) err += d;
  });
  let qmp: QmpClient | undefined;
  try {
    for (let i = 0; i < 400 && !qmp; i++) {
      if (proc.exitCode !== null) throw new Error(`${which} exited with ${proc.exitCode}: ${err}`);
      qmp = await QmpClient.connect(qmpSock, { timeoutMs: 2000 }).catch(async () => {
        await sleep(25);
        return undefined;
      });
    }
    if (!qmp) throw new Error(`${which}: no QMP socket: ${err}`);
    for (let i = 0; i < 200 && !existsSync(nbdSock); i++) await sleep(25);
    if (!existsSync(nbdSock)) throw new Error(`${which}: no NBD socket ${nbdSock}: ${err}`);
    for (const [cmd, cmdArgs] of setup.qmp ?? []) {
      try {
        await qmp.execute(cmd, cmdArgs);
      } catch (e) {
        throw new Error(`${which}: ${cmd} ${JSON.stringify(cmdArgs)} failed: ${(e as Error).message}`);
      }
    }
  } catch (e) {
    await qmp?.close().catch(() => undefined);
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
    }
    throw e;
  }
  return { which, proc, qmp, nbdSock, stderr: () => err };
}

async function stopDaemon(d: Daemon | undefined): Promise<void> {
  if (!d) return;
  await d.qmp.execute('quit').catch(() => undefined);
  await d.qmp.close().catch(() => undefined);
  if (d.proc.exitCode === null && d.proc.signalCode === null) {
    const exited = new Promise((r) => d.proc.once('exit', r));
    if ((await Promise.race([exited.then(() => true), sleep(5000).then(() => false)])) === false) {
      d.proc.kill('SIGKILL');
      await exited;
    }
  }
}

/** A qsd and a peer daemon, each on its own fresh image, for one describe. */
function daemonPair(setup: Setup, imageName: string): { qsd: () => Daemon; peer: () => Daemon } {
  let root = '';
  let qsd: Daemon | undefined;
  let peer: Daemon | undefined;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'blockemu-nbdw-'));
    const start = async (which: Which, sub: string): Promise<Daemon> => {
      const dir = join(root, sub);
      await mkdir(dir);
      const image = join(dir, imageName);
      await setup.image(image);
      return startDaemon(which, dir, setup, image);
    };
    // Started one after the other so that a failing peer does not leave a qsd behind unstopped.
    qsd = await start('qsd', 'q');
    peer = await start(PEER, 'p');
  });
  afterAll(async () => {
    await Promise.all([stopDaemon(qsd), stopDaemon(peer)]);
    if (root) await rm(root, { recursive: true, force: true });
  });
  return { qsd: () => qsd!, peer: () => peer! };
}

// ---- playing scripts ----------------------------------------------------

type Script = (w: NbdWire) => Promise<void>;

async function play(d: Daemon, script: Script): Promise<WireRecord[]> {
  const w = await NbdWire.connect(d.nbdSock);
  try {
    await script(w);
  } finally {
    await w.close();
  }
  return w.transcript;
}

/** Where two transcripts first differ, for the assertion message. */
function firstDiff(want: WireRecord[], got: WireRecord[]): string {
  const n = Math.max(want.length, got.length);
  for (let i = 0; i < n; i++) {
    const a = JSON.stringify(want[i] ?? null);
    const b = JSON.stringify(got[i] ?? null);
    if (a !== b) return `first difference at record ${i}:\n  qsd:      ${a}\n  ${PEER.padEnd(9)} ${b}`;
  }
  return 'transcripts equal';
}

async function compare(pair: { qsd: () => Daemon; peer: () => Daemon }, script: Script): Promise<void> {
  const [want, got] = await Promise.all([play(pair.qsd(), script), play(pair.peer(), script)]);
  const dump = process.env['NBD_WIRE_DUMP'];
  if (dump) {
    const file = (expect.getState().currentTestName ?? 'scenario').split(' > ').pop()!.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 120);
    await mkdir(dump, { recursive: true });
    await writeFile(join(dump, `${file}.json`), JSON.stringify({ qsd: want, [PEER]: got }, null, 1));
  }
  const tail = (d: Daemon) => d.stderr().slice(-1500).trim();
  const msg = `${firstDiff(want, got)}\n  qsd stderr: ${tail(pair.qsd())}\n  ${PEER} stderr: ${tail(pair.peer())}`;
  expect(got, msg).toEqual(want);
}

// ---- script building blocks ---------------------------------------------

async function hello(w: NbdWire, flags = NBD.FLAG_C_FIXED_NEWSTYLE | NBD.FLAG_C_NO_ZEROES): Promise<void> {
  await w.greeting();
  w.clientFlags(flags);
}

async function opt(w: NbdWire, option: number, payload?: Buffer, opts?: { magic?: bigint; length?: number }): Promise<void> {
  w.option(option, payload, opts);
  await w.optionReplies();
}

async function go(w: NbdWire, name: string, requests: number[] = [NBD.INFO_BLOCK_SIZE]): Promise<void> {
  await opt(w, NBD.OPT_GO, infoPayload(name, requests));
}

async function structured(w: NbdWire): Promise<void> {
  await opt(w, NBD.OPT_STRUCTURED_REPLY);
}

async function cmd(w: NbdWire, type: number, o: RequestOpts = {}): Promise<void> {
  w.request(type, o);
  await w.reply({ readLength: type === NBD.CMD_READ ? (o.length ?? 0) : 0 });
}

const read = (w: NbdWire, offset: number, length: number, flags = 0) => cmd(w, NBD.CMD_READ, { offset, length, flags });
const write = (w: NbdWire, offset: number, data: Buffer, flags = 0) => cmd(w, NBD.CMD_WRITE, { offset, data, flags });
const zeroes = (w: NbdWire, offset: number, length: number, flags = 0) => cmd(w, NBD.CMD_WRITE_ZEROES, { offset, length, flags });
const status = (w: NbdWire, offset: number, length: number, flags = 0) => cmd(w, NBD.CMD_BLOCK_STATUS, { offset, length, flags });
const fill = (byte: number, n: number) => Buffer.alloc(n, byte);

async function disc(w: NbdWire): Promise<void> {
  w.request(NBD.CMD_DISC);
  await w.expectClosed();
}

async function abort(w: NbdWire): Promise<void> {
  await opt(w, NBD.OPT_ABORT);
  await w.expectClosed();
}

// ---- images -------------------------------------------------------------

/**
 * A 4 MiB qcow2 image (64 KiB clusters): data 0x11 at [0, 64k), a zero
 * cluster at [1M, 1M+64k), 4 KiB of 0x22 at 2M (in an otherwise unwritten
 * cluster); the rest unallocated.
 */
async function qcow2Image(path: string): Promise<void> {
  const c = await qemuImg('create', '-q', '-f', 'qcow2', path, '4M');
  if (c.code !== 0) throw new Error(c.stderr);
  const w = await qemuIo('-f', 'qcow2', '-c', 'write -P 0x11 0 64k', '-c', 'write -z 1M 64k', '-c', 'write -P 0x22 2M 4k', path);
  if (w.code !== 0) throw new Error(w.stderr);
}

const RAW_SIZE = MiB + 1000; // not a multiple of 512

/** A sparse raw file of 1 MiB + 1000 bytes: 0x44 at [0, 64k), 0x45 at [512k, 516k), 0x46 in the last 1000 bytes. */
async function rawImage(path: string): Promise<void> {
  await writeFile(path, '');
  await truncate(path, RAW_SIZE);
  const w = await qemuIo('-f', 'raw', '-c', 'write -P 0x44 0 64k', '-c', 'write -P 0x45 512k 4k', '-c', `write -P 0x46 1M 1000`, path);
  if (w.code !== 0) throw new Error(w.stderr);
}

const SIZE = 4 * MiB;
const TOO_BIG = NBD.MAX_BUFFER_SIZE + 1;

// ---- scenarios ----------------------------------------------------------

describe.skipIf(!qemu.storageDaemon || !qemu.available)(`NBD server on the wire: qcow2 export (qemu-storage-daemon vs ${PEER})`, () => {
  const pair = daemonPair(
    {
      blockdevs: (img) => [`driver=file,node-name=disk-file,filename=${img}`, 'driver=qcow2,node-name=disk,file=disk-file'],
      exports: [
        'type=nbd,id=e0,node-name=disk,name=exp,writable=on',
        'type=nbd,id=e1,node-name=disk,name=ro,writable=off',
        'type=nbd,id=e2,node-name=disk,name=described,description=A test export',
      ],
      image: qcow2Image,
      qmp: [
        ['block-dirty-bitmap-add', { node: 'disk', name: 'b0', granularity: 65536 }],
        ['block-export-add', { type: 'nbd', id: 'e3', 'node-name': 'disk', name: 'bm', writable: true, description: 'bitmap export', bitmaps: ['b0'], 'allocation-depth': true }],
      ],
    },
    'disk.qcow2',
  );
  const run = (script: Script) => compare(pair, script);

  // -- handshake --

  it('greeting; client flags 0x3; LIST (and LIST with a payload); ABORT', () =>
    run(async (w) => {
      await hello(w);
      await opt(w, NBD.OPT_LIST);
      await opt(w, NBD.OPT_LIST, u32b(0));
      await abort(w);
    }));

  it('INFO for known and unknown exports, with and without NAME / BLOCK_SIZE requests; GO unknown; GO known', () =>
    run(async (w) => {
      await hello(w);
      await opt(w, NBD.OPT_INFO, infoPayload('exp'));
      await opt(w, NBD.OPT_INFO, infoPayload('exp', [NBD.INFO_NAME]));
      await opt(w, NBD.OPT_INFO, infoPayload('exp', [NBD.INFO_NAME, NBD.INFO_BLOCK_SIZE]));
      await opt(w, NBD.OPT_INFO, infoPayload('exp', [NBD.INFO_BLOCK_SIZE, 0xbeef, NBD.INFO_EXPORT, NBD.INFO_DESCRIPTION]));
      await opt(w, NBD.OPT_INFO, infoPayload('ro'));
      await opt(w, NBD.OPT_INFO, infoPayload('described', [NBD.INFO_NAME]));
      await opt(w, NBD.OPT_INFO, infoPayload('bm', [NBD.INFO_DESCRIPTION]));
      await opt(w, NBD.OPT_INFO, infoPayload(''));
      await opt(w, NBD.OPT_INFO, infoPayload('nope', [NBD.INFO_NAME]));
      await opt(w, NBD.OPT_INFO, infoPayload('x'.repeat(100)));
      await opt(w, NBD.OPT_GO, infoPayload('nope', [NBD.INFO_BLOCK_SIZE]));
      await opt(w, NBD.OPT_GO, infoPayload('exp', [NBD.INFO_NAME, NBD.INFO_BLOCK_SIZE]));
      await cmd(w, NBD.CMD_FLUSH);
      await disc(w);
    }));

  it('GO without info requests (minimum block size 1), then READ and DISC', () =>
    run(async (w) => {
      await hello(w);
      await opt(w, NBD.OPT_GO, infoPayload('described'));
      await read(w, 0, 4 * KiB);
      await disc(w);
    }));

  it('malformed options: inconsistent lengths, trailing bytes, embedded NUL, long names; STARTTLS; unknown options', () =>
    run(async (w) => {
      await hello(w);
      await opt(w, NBD.OPT_INFO, u16b(0)); // too short for the name length
      await opt(w, NBD.OPT_INFO, Buffer.concat([u32b(10), Buffer.from('exp'), u16b(0)])); // name longer than the option
      await opt(w, NBD.OPT_INFO, Buffer.concat([infoPayload('exp'), Buffer.from([1, 2, 3])])); // trailing bytes
      await opt(w, NBD.OPT_INFO, Buffer.concat([str32('exp'), u16b(3), u16b(NBD.INFO_NAME)])); // fewer requests than announced
      await opt(w, NBD.OPT_INFO, infoPayload(Buffer.from('ex\0p')));
      await opt(w, NBD.OPT_INFO, Buffer.concat([u32b(5000), u16b(0)])); // name length > 4096
      await opt(w, NBD.OPT_GO, Buffer.concat([u32b(3), Buffer.from('exp')])); // no request count
      await opt(w, NBD.OPT_STRUCTURED_REPLY, u32b(0));
      await opt(w, NBD.OPT_STARTTLS);
      await opt(w, NBD.OPT_STARTTLS, Buffer.from([0]));
      await opt(w, 4); // NBD_OPT_PEEK_EXPORT, never implemented
      await opt(w, 42, Buffer.from('hello'));
      await opt(w, 0x80000001);
      await opt(w, NBD.OPT_LIST_META_CONTEXT, str32('bm')); // no query count
      await opt(w, NBD.OPT_LIST_META_CONTEXT, Buffer.concat([str32('bm'), u32b(2), str32('x'.repeat(5000)), str32('base:allocation')])); // an over-long query is skipped
      await opt(w, NBD.OPT_LIST_META_CONTEXT, Buffer.concat([str32('bm'), u32b(1), u32b(20), Buffer.from('base:')])); // query longer than the option
      await opt(w, NBD.OPT_LIST_META_CONTEXT, Buffer.concat([str32('bm'), u32b(1), str32(Buffer.from('base:\0allocation'))]));
      await opt(w, NBD.OPT_LIST);
      await abort(w);
    }));

  it('bad option magic: connection closed', () =>
    run(async (w) => {
      await hello(w);
      await opt(w, NBD.OPT_LIST);
      w.option(NBD.OPT_LIST, undefined, { magic: 0x49484156454f5055n });
      await w.expectClosed();
    }));

  it('option length over 32 MiB: connection closed', () =>
    run(async (w) => {
      await hello(w);
      w.option(NBD.OPT_LIST, undefined, { length: TOO_BIG });
      await w.expectClosed();
    }));

  it('unknown client flags: connection closed', () =>
    run(async (w) => {
      await hello(w, 0x7);
      await w.expectClosed();
    }));

  it('client flags 0 (not fixed newstyle): EXPORT_NAME answered with size, flags and 124 zero bytes', () =>
    run(async (w) => {
      await hello(w, 0);
      w.option(NBD.OPT_EXPORT_NAME, Buffer.from('exp'));
      await w.exportNameReply(false);
      await read(w, 0, 512);
      await disc(w);
    }));

  it('client flags 0 then LIST: connection closed', () =>
    run(async (w) => {
      await hello(w, 0);
      w.option(NBD.OPT_LIST);
      await w.expectClosed();
    }));

  it('client flags NO_ZEROES only: EXPORT_NAME without padding', () =>
    run(async (w) => {
      await hello(w, NBD.FLAG_C_NO_ZEROES);
      w.option(NBD.OPT_EXPORT_NAME, Buffer.from('ro'));
      await w.exportNameReply(true);
      await read(w, 0, 512);
      await disc(w);
    }));

  it('fixed newstyle without NO_ZEROES: EXPORT_NAME with padding', () =>
    run(async (w) => {
      await hello(w, NBD.FLAG_C_FIXED_NEWSTYLE);
      w.option(NBD.OPT_EXPORT_NAME, Buffer.from('described'));
      await w.exportNameReply(false);
      await cmd(w, NBD.CMD_FLUSH);
      await disc(w);
    }));

  it('STRUCTURED_REPLY then EXPORT_NAME with NO_ZEROES: DF in the flags, structured READ', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      w.option(NBD.OPT_EXPORT_NAME, Buffer.from('exp'));
      await w.exportNameReply(true);
      await read(w, 0, 128 * KiB);
      await disc(w);
    }));

  it('EXPORT_NAME of an unknown export: connection closed', () =>
    run(async (w) => {
      await hello(w);
      w.option(NBD.OPT_EXPORT_NAME, Buffer.from('nope'));
      await w.expectClosed();
    }));

  it('STRUCTURED_REPLY twice; SET_META_CONTEXT before it; LIST_META_CONTEXT and SET_META_CONTEXT queries', () =>
    run(async (w) => {
      await hello(w);
      const list = (name: string, q: string[]) => opt(w, NBD.OPT_LIST_META_CONTEXT, metaPayload(name, q));
      const set = (name: string, q: string[]) => opt(w, NBD.OPT_SET_META_CONTEXT, metaPayload(name, q));
      await set('bm', ['base:allocation']);
      await list('bm', []);
      await list('bm', ['base:']);
      await list('bm', ['qemu:']);
      await list('bm', ['qemu:dirty-bitmap:']);
      await list('bm', ['qemu:allocation-depth']);
      await list('bm', ['qemu:dirty-bitmap:b0']);
      await list('bm', ['qemu:dirty-bitmap:zz']);
      await list('bm', ['qemu:dirty-bitmap:b0', 'base:allocation']);
      await list('bm', ['base:allocation', 'nope:x', 'qemu:foo', '']);
      await list('bm', ['base:allocationX', 'base', 'qemu']);
      await list('exp', []);
      await list('exp', ['qemu:']);
      await list('exp', ['qemu:allocation-depth', 'base:allocation']);
      await list('nope', []);
      await structured(w);
      await structured(w);
      await set('bm', ['base:']);
      await set('bm', ['qemu:']);
      await set('bm', ['qemu:dirty-bitmap:']);
      await set('exp', ['qemu:allocation-depth', 'qemu:dirty-bitmap:b0']);
      await set('nope', ['base:allocation']);
      await set('bm', ['qemu:dirty-bitmap:b0', 'qemu:allocation-depth', 'base:allocation']);
      await set('exp', ['base:allocation']);
      await abort(w);
    }));

  // -- transmission --

  it('simple replies: READ, WRITE, WRITE_ZEROES, TRIM, FLUSH, CACHE, BLOCK_STATUS, bad requests', () =>
    run(async (w) => {
      await hello(w);
      await go(w, 'exp');
      // READ: data, data + unallocated, zero cluster, unallocated, a partly written cluster
      await read(w, 0, 64 * KiB);
      await read(w, 60 * KiB, 8 * KiB);
      await read(w, MiB, 64 * KiB);
      await read(w, 3 * MiB, 4 * KiB);
      await read(w, 2 * MiB, 64 * KiB);
      await read(w, 0, 0);
      await read(w, SIZE, 0);
      await read(w, SIZE - 512, 1024); // past EOF
      await read(w, SIZE + 512, 0);
      await read(w, 0, 512, NBD.CMD_FLAG_FUA);
      await read(w, 0, 512, NBD.CMD_FLAG_DF); // DF without structured replies
      await read(w, 0, 512, 0x20);
      await read(w, 0, TOO_BIG);
      // WRITE
      await write(w, 3 * MiB, fill(0x33, 4 * KiB));
      await read(w, 3 * MiB, 8 * KiB);
      await write(w, 3 * MiB + 8 * KiB, fill(0x34, 512), NBD.CMD_FLAG_FUA);
      await read(w, 3 * MiB + 4 * KiB, 8 * KiB);
      await write(w, SIZE - 512, fill(0x35, 1024)); // past EOF
      await write(w, 3 * MiB, fill(0x36, 512), NBD.CMD_FLAG_NO_HOLE);
      await read(w, 3 * MiB, 1024);
      // WRITE_ZEROES
      await zeroes(w, 3 * MiB, 4 * KiB);
      await read(w, 3 * MiB, 8 * KiB);
      await zeroes(w, 3 * MiB + 64 * KiB, 64 * KiB, NBD.CMD_FLAG_NO_HOLE);
      await zeroes(w, 3 * MiB + 128 * KiB, 64 * KiB, NBD.CMD_FLAG_FAST_ZERO);
      await write(w, 3 * MiB + 192 * KiB, fill(0x37, 64 * KiB));
      await zeroes(w, 3 * MiB + 192 * KiB + KiB, 2 * KiB, NBD.CMD_FLAG_FAST_ZERO);
      await zeroes(w, 3 * MiB + 192 * KiB + KiB, 2 * KiB, NBD.CMD_FLAG_FAST_ZERO | NBD.CMD_FLAG_NO_HOLE);
      await zeroes(w, 3 * MiB + 192 * KiB + 8 * KiB, 4 * KiB, NBD.CMD_FLAG_FUA | NBD.CMD_FLAG_NO_HOLE);
      await read(w, 3 * MiB + 192 * KiB, 16 * KiB);
      await zeroes(w, SIZE - 512, 1024);
      await zeroes(w, 3 * MiB, 512, NBD.CMD_FLAG_REQ_ONE);
      // TRIM, FLUSH, CACHE
      await cmd(w, NBD.CMD_TRIM, { offset: 3 * MiB + 192 * KiB, length: 64 * KiB });
      await read(w, 3 * MiB + 192 * KiB + 32 * KiB, 4 * KiB);
      await cmd(w, NBD.CMD_TRIM, { offset: 3 * MiB, length: 4 * KiB, flags: NBD.CMD_FLAG_FUA });
      await cmd(w, NBD.CMD_TRIM, { offset: SIZE, length: 512 });
      await cmd(w, NBD.CMD_FLUSH);
      await cmd(w, NBD.CMD_FLUSH, { flags: NBD.CMD_FLAG_FUA });
      await cmd(w, NBD.CMD_FLUSH, { flags: NBD.CMD_FLAG_REQ_ONE });
      // (CACHE of unallocated clusters allocates them in QEMU: see the CACHE scenario; here only allocated data.)
      await cmd(w, NBD.CMD_CACHE, { offset: 0, length: 64 * KiB });
      await cmd(w, NBD.CMD_CACHE, { offset: SIZE - 512, length: 1024 });
      await cmd(w, NBD.CMD_CACHE, { offset: 0, length: TOO_BIG });
      // BLOCK_STATUS (not negotiated), unknown commands, a cookie with high bits
      await status(w, 0, SIZE);
      await status(w, 0, 0);
      await cmd(w, 9);
      await cmd(w, 0xffff, { offset: 0, length: 512 });
      await cmd(w, NBD.CMD_FLUSH, { cookie: 0xfedcba9876543210n });
      await disc(w);
    }));

  it('structured replies: READ chunks (with and without DF), WRITE, WRITE_ZEROES, TRIM, FLUSH, CACHE, BLOCK_STATUS base:allocation, errors', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await opt(w, NBD.OPT_SET_META_CONTEXT, metaPayload('exp', ['base:allocation']));
      await go(w, 'exp');
      await read(w, 0, 64 * KiB);
      await read(w, 0, 128 * KiB);
      await read(w, 32 * KiB, MiB + 64 * KiB);
      await read(w, MiB, 64 * KiB);
      await read(w, 2 * MiB, 64 * KiB);
      await read(w, 3 * MiB + 512 * KiB, 4 * KiB);
      await read(w, 0, 128 * KiB, NBD.CMD_FLAG_DF);
      await read(w, MiB, 64 * KiB, NBD.CMD_FLAG_DF);
      await read(w, 0, 0);
      await read(w, 0, 0, NBD.CMD_FLAG_DF);
      await read(w, SIZE - 512, 1024);
      await read(w, SIZE + 512, 0);
      await read(w, 0, 512, 0x20);
      await read(w, 0, 512, NBD.CMD_FLAG_FUA | NBD.CMD_FLAG_DF);
      await read(w, 0, TOO_BIG);
      await status(w, 0, SIZE);
      await status(w, 0, SIZE, NBD.CMD_FLAG_REQ_ONE);
      await status(w, 32 * KiB, 100 * KiB);
      await status(w, 2 * MiB, 64 * KiB);
      await status(w, 2 * MiB + 4 * KiB, 64 * KiB, NBD.CMD_FLAG_REQ_ONE);
      await status(w, SIZE - 4 * KiB, 4 * KiB);
      await status(w, 0, 0);
      await status(w, SIZE - 512, 1024);
      await status(w, 0, 512, NBD.CMD_FLAG_DF);
      // writes in [3.5M, 4M)
      const base = 3 * MiB + 512 * KiB;
      await write(w, base, fill(0x44, 4 * KiB));
      await write(w, base + 4 * KiB, fill(0x45, 4 * KiB), NBD.CMD_FLAG_FUA);
      await read(w, base, 64 * KiB);
      await status(w, base, 128 * KiB);
      await write(w, SIZE - 512, fill(0x46, 1024));
      await write(w, base, fill(0x47, 512), NBD.CMD_FLAG_DF);
      await zeroes(w, base, 4 * KiB);
      await zeroes(w, base + 64 * KiB, 64 * KiB);
      await zeroes(w, base + 128 * KiB, 64 * KiB, NBD.CMD_FLAG_NO_HOLE);
      await zeroes(w, base + 192 * KiB, 64 * KiB, NBD.CMD_FLAG_FAST_ZERO);
      await write(w, base + 256 * KiB, fill(0x48, 64 * KiB));
      await zeroes(w, base + 256 * KiB + KiB, 2 * KiB, NBD.CMD_FLAG_FAST_ZERO);
      await zeroes(w, base + 256 * KiB, 64 * KiB, NBD.CMD_FLAG_FAST_ZERO | NBD.CMD_FLAG_NO_HOLE);
      await zeroes(w, SIZE - 512, 1024);
      await zeroes(w, base, 512, NBD.CMD_FLAG_DF);
      await read(w, base, 384 * KiB);
      await status(w, base, 512 * KiB);
      await cmd(w, NBD.CMD_TRIM, { offset: base + 320 * KiB, length: 64 * KiB });
      await cmd(w, NBD.CMD_TRIM, { offset: SIZE - 512, length: 1024 });
      await cmd(w, NBD.CMD_TRIM, { offset: base, length: 512, flags: NBD.CMD_FLAG_NO_HOLE });
      await status(w, base + 320 * KiB, 64 * KiB);
      await cmd(w, NBD.CMD_FLUSH);
      await cmd(w, NBD.CMD_FLUSH, { flags: NBD.CMD_FLAG_DF });
      await cmd(w, NBD.CMD_CACHE, { offset: 0, length: 64 * KiB, flags: NBD.CMD_FLAG_FUA });
      await cmd(w, NBD.CMD_CACHE, { offset: SIZE, length: 1 });
      await cmd(w, NBD.CMD_CACHE, { offset: 0, length: TOO_BIG });
      await cmd(w, 9);
      await cmd(w, 8, { offset: 0, length: 512, cookie: 0x8000000000000001n });
      await disc(w);
    }));

  it('BLOCK_STATUS without a negotiated context (structured), and with length 0', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await go(w, 'exp');
      await status(w, 0, 64 * KiB);
      await status(w, 0, 0);
      await status(w, 0, 64 * KiB, NBD.CMD_FLAG_REQ_ONE);
      await disc(w);
    }));

  it('SET_META_CONTEXT for another export is dropped by GO', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await opt(w, NBD.OPT_SET_META_CONTEXT, metaPayload('bm', ['base:allocation']));
      await go(w, 'exp');
      await status(w, 0, 64 * KiB);
      await disc(w);
    }));

  it('base:allocation + qemu:allocation-depth + qemu:dirty-bitmap:b0, before and after writes', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await opt(w, NBD.OPT_SET_META_CONTEXT, metaPayload('bm', ['base:allocation', 'qemu:dirty-bitmap:b0', 'qemu:allocation-depth']));
      await go(w, 'bm', [NBD.INFO_BLOCK_SIZE, NBD.INFO_NAME]);
      await status(w, 0, SIZE);
      await status(w, 0, SIZE, NBD.CMD_FLAG_REQ_ONE);
      await write(w, 512 * KiB, fill(0x66, 64 * KiB));
      await write(w, 700 * KiB, fill(0x67, 100));
      await zeroes(w, MiB + 64 * KiB, 64 * KiB);
      await status(w, 0, SIZE);
      await status(w, 600 * KiB, 200 * KiB, NBD.CMD_FLAG_REQ_ONE);
      await status(w, 700 * KiB, 10, NBD.CMD_FLAG_REQ_ONE);
      await status(w, MiB, 128 * KiB);
      await disc(w);
    }));

  it('only qemu:dirty-bitmap:b0 negotiated', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await opt(w, NBD.OPT_SET_META_CONTEXT, metaPayload('bm', ['qemu:dirty-bitmap:b0']));
      await go(w, 'bm');
      await status(w, 0, SIZE);
      await status(w, 512 * KiB, 128 * KiB);
      await disc(w);
    }));

  // QEMU 7.2 implements CACHE as a copy-on-read prefetch: on a qcow2 node without a backing file it
  // allocates the unallocated clusters it covers (as zero clusters), which qemu:allocation-depth shows.
  it('CACHE of unallocated clusters, seen through base:allocation and qemu:allocation-depth', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await opt(w, NBD.OPT_SET_META_CONTEXT, metaPayload('bm', ['base:allocation', 'qemu:allocation-depth']));
      await go(w, 'bm');
      const at = MiB + 512 * KiB;
      await status(w, at, 256 * KiB);
      await cmd(w, NBD.CMD_CACHE, { offset: at, length: 128 * KiB });
      await status(w, at, 256 * KiB);
      await read(w, at - 64 * KiB, 256 * KiB);
      await disc(w);
    }));

  it('read-only export, simple replies: WRITE, WRITE_ZEROES, TRIM refused; READ, FLUSH, CACHE work', () =>
    run(async (w) => {
      await hello(w);
      await go(w, 'ro');
      await write(w, 0, fill(0x77, 512));
      await zeroes(w, 0, 512);
      await cmd(w, NBD.CMD_TRIM, { offset: 0, length: 512 });
      await read(w, 0, 512);
      await cmd(w, NBD.CMD_FLUSH);
      await cmd(w, NBD.CMD_CACHE, { offset: 0, length: 4096 });
      await disc(w);
    }));

  it('read-only export, structured replies: error messages', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await go(w, 'ro');
      await write(w, 0, fill(0x77, 512));
      await zeroes(w, 0, 512, NBD.CMD_FLAG_FAST_ZERO);
      await cmd(w, NBD.CMD_TRIM, { offset: SIZE, length: 512 });
      await write(w, SIZE, fill(0x77, 512));
      await read(w, 0, 64 * KiB);
      await disc(w);
    }));

  it('WRITE longer than 32 MiB: error reply, then connection closed', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await go(w, 'exp');
      w.request(NBD.CMD_WRITE, { offset: 0, length: TOO_BIG });
      await w.reply();
      await w.expectClosed();
    }));

  it('WRITE longer than 32 MiB, simple replies: error reply, then connection closed', () =>
    run(async (w) => {
      await hello(w);
      await go(w, 'exp');
      w.request(NBD.CMD_WRITE, { offset: 0, length: TOO_BIG });
      await w.reply();
      await w.expectClosed();
    }));

  // QEMU 7.2 answers a request with a bad magic (EINVAL, echoing the cookie it parsed) before it hangs up.
  it('bad request magic: error reply, then connection closed', () =>
    run(async (w) => {
      await hello(w);
      await go(w, 'exp');
      await cmd(w, NBD.CMD_FLUSH);
      w.request(NBD.CMD_FLUSH, { magic: 0x25609514 });
      await w.reply();
      await w.expectClosed();
    }));

  it('bad request magic, structured replies: error chunk, then connection closed', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await go(w, 'exp');
      w.request(NBD.CMD_READ, { magic: 0x12345678, offset: 0, length: 512 });
      await w.reply();
      await w.expectClosed();
    }));

  it('DISC with odd flags, offset and length: closed without a reply', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await go(w, 'exp');
      w.request(NBD.CMD_DISC, { flags: 0xff, offset: SIZE * 2, length: 12345 });
      await w.expectClosed();
    }));
});

describe.skipIf(!qemu.storageDaemon || !qemu.available)(`NBD server on the wire: raw export of an unaligned file (qemu-storage-daemon vs ${PEER})`, () => {
  const pair = daemonPair(
    {
      blockdevs: (img) => [`driver=file,node-name=disk-file,filename=${img}`, 'driver=raw,node-name=disk,file=disk-file'],
      exports: ['type=nbd,id=e0,node-name=disk,name=exp,writable=on,allocation-depth=on'],
      image: rawImage,
    },
    'disk.raw',
  );
  const run = (script: Script) => compare(pair, script);
  const END = Math.ceil(RAW_SIZE / 512) * 512; // what QEMU 7.2 reports: the length in sectors, rounded up

  it('LIST, INFO, meta contexts', () =>
    run(async (w) => {
      await hello(w);
      await opt(w, NBD.OPT_LIST);
      await opt(w, NBD.OPT_INFO, infoPayload('exp', [NBD.INFO_NAME, NBD.INFO_BLOCK_SIZE]));
      await opt(w, NBD.OPT_LIST_META_CONTEXT, metaPayload('exp', []));
      await opt(w, NBD.OPT_LIST_META_CONTEXT, metaPayload('exp', ['qemu:']));
      await abort(w);
    }));

  it('READ, BLOCK_STATUS (base:allocation, qemu:allocation-depth), WRITE, WRITE_ZEROES, TRIM near the unaligned end', () =>
    run(async (w) => {
      await hello(w);
      await structured(w);
      await opt(w, NBD.OPT_SET_META_CONTEXT, metaPayload('exp', ['base:allocation', 'qemu:allocation-depth']));
      await go(w, 'exp');
      await read(w, 0, 128 * KiB);
      await read(w, 512 * KiB, 8 * KiB);
      await read(w, MiB, 1000);
      await read(w, MiB, 1024);
      await read(w, END - 512, 512);
      await read(w, END - 512, 1024);
      await read(w, MiB - 4 * KiB, 8 * KiB, NBD.CMD_FLAG_DF);
      await read(w, END - 8 * KiB, 8 * KiB, NBD.CMD_FLAG_DF);
      await status(w, 0, MiB); // within the file, whatever the size rounding
      await status(w, 0, END);
      await status(w, 0, END, NBD.CMD_FLAG_REQ_ONE);
      await status(w, MiB, END - MiB);
      await write(w, 256 * KiB, fill(0x51, 4 * KiB));
      await write(w, END - 24, fill(0x52, 24));
      // DF: one chunk. Without it QEMU splits the read at the old end of file, as its
      // file-posix block-status cache still remembers it; the bytes are what is compared.
      await read(w, END - 512, 512, NBD.CMD_FLAG_DF);
      await zeroes(w, 0, 4 * KiB);
      await zeroes(w, 768 * KiB, 64 * KiB, NBD.CMD_FLAG_FAST_ZERO);
      await cmd(w, NBD.CMD_TRIM, { offset: 32 * KiB, length: 32 * KiB });
      await status(w, 0, MiB);
      await status(w, 0, END);
      await read(w, 0, 64 * KiB);
      await cmd(w, NBD.CMD_FLUSH);
      await disc(w);
    }));

  it('simple replies: READ across the end of the file', () =>
    run(async (w) => {
      await hello(w);
      await go(w, 'exp', []);
      await read(w, MiB, END - MiB);
      await read(w, END, 0);
      await read(w, END - 512, 513);
      await disc(w);
    }));
});
