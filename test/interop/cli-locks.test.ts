/**
 * Image locks of `blockemu img` and `blockemu io` against QEMU 7.2's tools.
 *
 * 1. What QEMU's tools lock, read back byte by byte: while one lock byte of
 *    a file is held (an OFD lock of this process), a QEMU tool is refused
 *    exactly when it wants that permission (byte 200 + i) or does not share
 *    it (byte 100 + i). That gives each open's permissions on each file,
 *    which must be what src/image/tool-perms.ts works out.
 * 2. The same refusals: for each holder (qemu-io rw, -r, -U -r,
 *    qemu-storage-daemon with a read-write and a read-only qcow2 node) of a
 *    qcow2 image, a raw image or the backing file of a chain, every
 *    requester (each `img` subcommand, `io` with and without -r/-U) is run
 *    through QEMU's tool and through blockemu, each in its own copy of the
 *    images under its own holder: stdout, stderr and exit code must match.
 * 3. The other way: while `blockemu io` holds an image, QEMU's tools are
 *    refused exactly as while qemu-io holds it, and the same bytes are locked.
 *
 * Normalised before comparing, and nothing else: blockemu's program name
 * ("blockemu img: …" is "qemu-img: …", "blockemu io: …" is "qemu-io: …").
 */
import { cp, mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ofdLocksAvailable } from '../../src/image/file-lock.js';
import { ImageLock } from '../../src/image/file-lock.js';
import { CREATE_PERMS } from '../../src/image/file-create.js';
import { chainFilePerms, type ToolOpenFlags } from '../../src/image/tool-perms.js';
import type { ImageFormat } from '../../src/image/types.js';
import { holdWithBlockemuIo, holdWithQemuIo, holdWithQsd, lockedBytes, type Holder } from '../helpers/locks.js';
import { qemu, run, type RunResult, runBlockemu as blockemuTool } from '../helpers/qemu.js';

const ofd = await ofdLocksAvailable();
if (!ofd) console.warn('SKIP: this machine cannot take OFD locks through perl (see resolveLocking)');

const ALL = 15;

/** One command line of either tool, run in the directory holding the images. */
interface Requester {
  tool: 'img' | 'io';
  args: string[];
  /** It may change the images (each run then gets fresh copies). */
  writes?: boolean;
}

const img = (args: string, writes = false): Requester => ({ tool: 'img', args: args.split(' '), writes });
const io = (opts: string, file: string, writes = false): Requester => ({ tool: 'io', args: [...(opts ? opts.split(' ') : []), '-c', 'length', file], writes });
const label = (r: Requester) => `${r.tool} ${r.args.join(' ')}`;

function runQemu(r: Requester, cwd: string): Promise<RunResult> {
  return run(r.tool === 'img' ? 'qemu-img' : 'qemu-io', r.args, { cwd });
}

async function runBlockemu(r: Requester, cwd: string): Promise<RunResult> {
  const b = await blockemuTool([r.tool, ...r.args], { cwd });
  return { ...b, stderr: b.stderr.replaceAll('blockemu img', 'qemu-img').replaceAll('blockemu io', 'qemu-io') };
}

const refused = (r: RunResult) => /Failed to get (shared )?"[a-z ]+" lock/.test(r.stderr);

let root: string;
/** The images every case starts from, made once by qemu-img; each case works on copies. */
let template: string;
let cases = 0;

beforeAll(async () => {
  if (!ofd || !qemu.available) return;
  root = await mkdtemp(join(tmpdir(), 'blockemu-cli-locks-'));
  template = join(root, 'template');
  await mkdir(template);
  const make = async (args: string) => {
    const r = await run('qemu-img', args.split(' '), { cwd: template });
    if (r.code !== 0) throw new Error(`qemu-img ${args}: ${r.stderr}`);
  };
  await make('create -q -f qcow2 a.qcow2 1M');
  await make('create -q -f qcow2 c.qcow2 1M');
  await make('create -q -f raw r.raw 1M');
  await make('create -q -f raw r2.raw 1M');
  await make('create -q -f qcow2 base.qcow2 1M');
  await make('create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2');
  await make('create -q -f qcow2 -b r.raw -F raw over-raw.qcow2');
  const w = await run('qemu-io', ['-c', 'write -P 0x5a 64k 64k', join(template, 'a.qcow2')]);
  if (w.code !== 0) throw new Error(w.stderr);
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** A fresh copy of the template images. */
async function freshDir(): Promise<string> {
  const dir = join(root, `case-${++cases}`);
  await cp(template, dir, { recursive: true });
  return dir;
}

/** Holds byte `byte` of `file` with an OFD read lock of this process until `close`. */
async function holdByte(file: string, byte: number): Promise<{ close(): Promise<void> }> {
  const fh = await open(file, 'r');
  const lock = new ImageLock(fh.fd, file);
  // Byte 100 + i: holding permission i (sharing all); byte 200 + i: holding nothing, not sharing i.
  const bit = 1 << (byte % 100);
  const failed = await (byte < 200 ? lock.commit(bit, 15) : lock.commit(0, 15 & ~bit));
  if (failed) throw new Error(`could not lock byte ${byte} of ${file}: ${failed.message}`);
  return { close: () => lock.release().then(() => fh.close()) };
}

/**
 * What a QEMU tool's run holds on `file`, read off its refusals: it wants
 * permission i when a holder of byte 200 + i (who does not share i) stops
 * it, and does not share i when a holder of byte 100 + i (who uses i) does.
 */
async function probeQemu(r: Requester, file: string): Promise<{ perm: number; shared: number }> {
  let perm = 0;
  let shared = ALL;
  for (let i = 0; i < 4; i++) {
    for (const [base, hit] of [
      [200, () => (perm |= 1 << i)],
      [100, () => (shared &= ~(1 << i))],
    ] as const) {
      const dir = await freshDir();
      const fh = await holdByte(join(dir, file), base + i);
      try {
        if (refused(await runQemu(r, dir))) hit();
      } finally {
        await fh.close();
      }
    }
  }
  return { perm, shared };
}

const perms = (formats: ImageFormat[], flags: ToolOpenFlags, depth = 0) => chainFilePerms(formats, flags)[depth]!;

describe.skipIf(!ofd || !qemu.available)('what QEMU 7.2 tools lock is what tool-perms.ts says', () => {
  const CASES: Array<{ req: Requester; file: string; want: { perm: number; shared: number } }> = [
    { req: io('', 'a.qcow2'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: false }) },
    { req: io('-r', 'a.qcow2'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: true }) },
    { req: io('-U -r', 'a.qcow2'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: true, forceShare: true }) },
    { req: io('-f raw', 'r.raw'), file: 'r.raw', want: perms(['raw'], { readOnly: false }) },
    { req: io('-f raw -r', 'r.raw'), file: 'r.raw', want: perms(['raw'], { readOnly: true }) },
    { req: img('info a.qcow2'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: true, noIo: true }) },
    { req: img('info -f raw r.raw'), file: 'r.raw', want: perms(['raw'], { readOnly: true, noIo: true }) },
    { req: img('check a.qcow2'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: true }) },
    { req: img('check -r all a.qcow2'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: false }) },
    { req: img('map a.qcow2'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: true }) },
    { req: img('compare a.qcow2 c.qcow2'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: true }) },
    { req: img('convert a.qcow2 out.raw'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: true, noShare: true }) },
    { req: img('convert -f raw r.raw out.raw'), file: 'r.raw', want: perms(['raw'], { readOnly: true, noShare: true }) },
    { req: img('create -q -f raw a.qcow2 1M'), file: 'a.qcow2', want: CREATE_PERMS },
    { req: img('resize -q a.qcow2 2M'), file: 'a.qcow2', want: perms(['qcow2'], { readOnly: false, resize: true }) },
    { req: img('resize -q -f raw r.raw 2M'), file: 'r.raw', want: perms(['raw'], { readOnly: false, resize: true }) },
    // Backing files: each image of info --backing-chain is opened on its own, without its backing file.
    { req: img('info --backing-chain top.qcow2'), file: 'base.qcow2', want: perms(['qcow2'], { readOnly: true, noIo: true }) },
    { req: img('map top.qcow2'), file: 'base.qcow2', want: perms(['qcow2', 'qcow2'], { readOnly: true }, 1) },
    { req: img('check top.qcow2'), file: 'base.qcow2', want: perms(['qcow2', 'qcow2'], { readOnly: true }, 1) },
    { req: img('convert top.qcow2 out.raw'), file: 'base.qcow2', want: perms(['qcow2', 'qcow2'], { readOnly: true, noShare: true }, 1) },
    { req: io('', 'top.qcow2'), file: 'base.qcow2', want: perms(['qcow2', 'qcow2'], { readOnly: false }, 1) },
    { req: io('', 'over-raw.qcow2'), file: 'r.raw', want: perms(['qcow2', 'raw'], { readOnly: false }, 1) },
    { req: img('create -q -f qcow2 -b top.qcow2 -F qcow2 o.qcow2'), file: 'top.qcow2', want: perms(['qcow2'], { readOnly: true, bare: true, noIo: true, forceShare: true }) },
    { req: img('create -q -f qcow2 -b top.qcow2 -F qcow2 o.qcow2'), file: 'base.qcow2', want: perms(['qcow2', 'qcow2'], { readOnly: true, bare: true, noIo: true, forceShare: true }, 1) },
  ];
  for (const c of CASES) {
    it(`${label(c.req)} on ${c.file}`, async () => {
      expect(await probeQemu(c.req, c.file)).toEqual(c.want);
    });
  }
});

/** How a holder keeps an image open in `dir` (paths absolute: the holder's own messages do not matter). */
type HolderKind = { name: string; start: (dir: string, file: string) => Promise<Holder> };

const qemuIo = (args: string[]): HolderKind => ({ name: ['qemu-io', ...args].join(' '), start: (d, f) => holdWithQemuIo(args, join(d, f)) });
const qsd = (readOnly: boolean): HolderKind => ({
  name: `qemu-storage-daemon (qcow2 node, read-only=${readOnly ? 'on' : 'off'})`,
  start: (d, f) => holdWithQsd([`driver=qcow2,node-name=n0,read-only=${readOnly ? 'on' : 'off'},file.driver=file,file.filename=${join(d, f)}`], join(d, f)),
});

/** Runs each requester through QEMU and blockemu, each in its own copy of the images under its own holder; gives QEMU's results by requester. */
async function expectSameUnder(holder: HolderKind, held: string, requesters: Requester[]): Promise<Map<string, RunResult>> {
  const out = new Map<string, RunResult>();
  const session = async (reqs: Requester[]) => {
    const dirs = { q: await freshDir(), b: await freshDir() };
    const holders = [await holder.start(dirs.q, held), await holder.start(dirs.b, held)];
    try {
      for (const r of reqs) {
        const q = await runQemu(r, dirs.q);
        const b = await runBlockemu(r, dirs.b);
        expect({ holder: holder.name, requester: label(r), ...b }).toEqual({ holder: holder.name, requester: label(r), ...q });
        out.set(label(r), q);
      }
    } finally {
      for (const h of holders) await h.stop();
    }
  };
  // Requesters that only read share one session; one that may write gets fresh images.
  await session(requesters.filter((r) => !r.writes));
  for (const r of requesters.filter((r) => r.writes)) await session([r]);
  return out;
}

const QCOW2_REQUESTERS: Requester[] = [
  img('info a.qcow2'),
  img('info -U a.qcow2'),
  img('check a.qcow2'),
  img('check -U a.qcow2'),
  img('check -U -r all a.qcow2'),
  img('map a.qcow2'),
  img('map -U --output=json a.qcow2'),
  img('compare a.qcow2 c.qcow2'),
  img('compare -U a.qcow2 c.qcow2'),
  img('convert -O qcow2 a.qcow2 out.qcow2'),
  img('convert -U a.qcow2 out.raw'),
  io('-r', 'a.qcow2'),
  io('-U -r', 'a.qcow2'),
  io('-U', 'a.qcow2'),
  img('check -r all a.qcow2', true),
  img('convert -O qcow2 c.qcow2 a.qcow2', true),
  img('create -f qcow2 a.qcow2 1M', true),
  img('create -f qcow2 -b a.qcow2 -F qcow2 o.qcow2', true),
  img('bitmap --add a.qcow2 b0', true),
  img('resize a.qcow2 2M', true),
  io('', 'a.qcow2', true),
];

const RAW_REQUESTERS: Requester[] = [
  img('info r.raw'),
  img('check -f raw r.raw'),
  img('compare r.raw r2.raw'),
  img('convert -f raw r.raw out.raw'),
  img('convert -U -f raw r.raw out2.raw'),
  io('-f raw -r', 'r.raw'),
  io('-f raw -U -r', 'r.raw'),
  img('convert -f raw -O raw r2.raw r.raw', true),
  img('create -f raw r.raw 1M', true),
  img('resize -f raw r.raw 2M', true),
  io('-f raw', 'r.raw', true),
];

const CHAIN_REQUESTERS: Requester[] = [
  img('info top.qcow2'),
  img('info --backing-chain top.qcow2'),
  img('info -U --backing-chain top.qcow2'),
  img('check top.qcow2'),
  img('map top.qcow2'),
  img('compare top.qcow2 c.qcow2'),
  img('convert top.qcow2 out.raw'),
  io('-r', 'top.qcow2'),
  io('-U -r', 'top.qcow2'),
  img('create -f qcow2 -b top.qcow2 -F qcow2 o.qcow2', true),
  img('bitmap --add top.qcow2 b0', true),
  img('resize top.qcow2 2M', true),
  io('', 'top.qcow2', true),
];

describe.skipIf(!ofd || !qemu.available || !qemu.storageDaemon)('blockemu img and io are refused as qemu-img and qemu-io are', () => {
  // Each case also checks that its holder is seen, by one answer QEMU must give.
  const QCOW2_HOLDERS = [
    { holder: qemuIo([]), writerRefused: true },
    { holder: qemuIo(['-r']), writerRefused: true },
    { holder: qemuIo(['-U', '-r']), writerRefused: false },
    { holder: qsd(false), writerRefused: true },
    { holder: qsd(true), writerRefused: true },
  ];
  for (const { holder, writerRefused } of QCOW2_HOLDERS) {
    it(`a qcow2 image held by ${holder.name}`, async () => {
      const q = await expectSameUnder(holder, 'a.qcow2', QCOW2_REQUESTERS);
      expect(refused(q.get('io -c length a.qcow2')!)).toBe(writerRefused);
    });
  }

  // A raw image's users share everything: only a copy's source, which lets others only read, is refused a writing holder.
  for (const { holder, sourceRefused } of [
    { holder: qemuIo(['-f', 'raw']), sourceRefused: true },
    { holder: qemuIo(['-f', 'raw', '-r']), sourceRefused: false },
    { holder: qemuIo(['-f', 'raw', '-U', '-r']), sourceRefused: false },
  ]) {
    it(`a raw image held by ${holder.name}`, async () => {
      const q = await expectSameUnder(holder, 'r.raw', RAW_REQUESTERS);
      expect(refused(q.get('img convert -f raw r.raw out.raw')!)).toBe(sourceRefused);
    });
  }

  // Backing files are read consistently: a writer of one stops every reader of the chain; a reader stops nobody.
  for (const { holder, readerRefused } of [
    { holder: qemuIo([]), readerRefused: true },
    { holder: qemuIo(['-r']), readerRefused: false },
    { holder: qsd(false), readerRefused: true },
  ]) {
    it(`the backing file of a chain held by ${holder.name}`, async () => {
      const q = await expectSameUnder(holder, 'base.qcow2', CHAIN_REQUESTERS);
      expect(refused(q.get('img map top.qcow2')!)).toBe(readerRefused);
    });
  }
});

describe.skipIf(!ofd || !qemu.available)('QEMU tools are refused by blockemu io as by qemu-io', () => {
  const REQUESTERS: Requester[] = [
    io('', 'a.qcow2'),
    io('-r', 'a.qcow2'),
    io('-U -r', 'a.qcow2'),
    img('info a.qcow2'),
    img('check a.qcow2'),
    img('map a.qcow2'),
    img('convert a.qcow2 out.raw'),
    io('-f raw', 'r.raw'),
    img('convert -f raw r.raw out.raw'),
    io('', 'base.qcow2'),
    io('-r', 'base.qcow2'),
    img('info base.qcow2'),
  ];
  const HELD = [
    { args: [], file: 'a.qcow2' },
    { args: ['-r'], file: 'a.qcow2' },
    { args: ['-U', '-r'], file: 'a.qcow2' },
    { args: ['-f', 'raw'], file: 'r.raw' },
    { args: ['-f', 'raw', '-r'], file: 'r.raw' },
    // The chain: an overlay held read-write locks its backing file too.
    { args: [], file: 'top.qcow2' },
  ];
  for (const h of HELD) {
    it(`io ${[...h.args, h.file].join(' ')}`, async () => {
      const dirs = { q: await freshDir(), b: await freshDir() };
      const holders = [await holdWithQemuIo(h.args, join(dirs.q, h.file)), await holdWithBlockemuIo(h.args, join(dirs.b, h.file))];
      try {
        for (const f of ['a.qcow2', 'r.raw', 'base.qcow2', 'top.qcow2']) {
          expect({ file: f, bytes: await lockedBytes(join(dirs.b, f)) }).toEqual({ file: f, bytes: await lockedBytes(join(dirs.q, f)) });
        }
        let refusals = 0;
        for (const r of REQUESTERS) {
          const q = await runQemu(r, dirs.q);
          const b = await runQemu(r, dirs.b);
          expect({ requester: label(r), ...b }).toEqual({ requester: label(r), ...q });
          if (refused(b)) refusals++;
        }
        // Something was held: a read-write holder of a.qcow2 refuses every other user of it but the force-shared one.
        if (h.file === 'a.qcow2' && h.args.length === 0) expect(refusals).toBe(6);
      } finally {
        for (const x of holders) await x.stop();
      }
    });
  }
});
