/**
 * Image locks: the bytes ImageLock takes (read back from /proc/locks), its
 * one helper process and its failure handling, and, against QEMU 7.2's own processes,
 * that blockemu and QEMU refuse and allow each other exactly what two QEMUs
 * do. Expectations come from file-posix's rules (written out below as
 * `rule`) and are checked against what QEMU itself does in the same run.
 */
import { spawn } from 'node:child_process';
import { chmod, copyFile, type FileHandle, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { BlockError } from '../../src/image/errors.js';
import { ImageLock, ImageLockError, ofdLocksAvailable, resolveLocking } from '../../src/image/file-lock.js';
import { lockHelperLimits, lockHelperRequests, lockHelperStarts, stopLockHelper } from '../../src/image/lock-helper.js';
import { holdWithQemuIo, holdWithQsd, lockedBytes, qemuIoOpens, type Holder, type Outcome } from '../helpers/locks.js';
import { BLOCKEMU, qemu, run } from '../helpers/qemu.js';

const R = 1, W = 2, WU = 4, RS = 8, ALL = 15;
interface Perms {
  perm: number;
  shared: number;
}
/** A writable qcow2 node's file child (bdrv_default_perms_for_storage: metadata needs write and resize and shares neither). */
const QCOW2_RW: Perms = { perm: R | W | RS, shared: R | WU };
/** The same read-only. */
const QCOW2_RO: Perms = { perm: R, shared: R | WU };

const ofd = await ofdLocksAvailable();
if (!ofd) console.warn('SKIP: this machine cannot take OFD locks through perl (see resolveLocking)');

/** file-posix's rule, from block/file-posix.c: a user holding `h` locks 100 + i per perm bit and 200 + i per unshared bit. */
function bytesOf(h: Perms): number[] {
  const bytes: number[] = [];
  for (let i = 0; i < 4; i++) if (h.perm & (1 << i)) bytes.push(100 + i);
  for (let i = 0; i < 4; i++) if (!(h.shared & (1 << i))) bytes.push(200 + i);
  return bytes;
}

const NAMES = ['consistent read', 'write', 'write unchanged', 'resize'];

/** raw_check_lock_bytes: first byte 200 + i per wanted perm, then 100 + i per unshared perm, in bit order. */
function rule(h: Perms, r: Perms, file: string): Outcome {
  const hint = `Is another process using the image [${file}]?`;
  for (let i = 0; i < 4; i++) if (r.perm & (1 << i) && !(h.shared & (1 << i))) return { message: `Failed to get "${NAMES[i]}" lock`, hint };
  for (let i = 0; i < 4; i++) if (!(r.shared & (1 << i)) && h.perm & (1 << i)) return { message: `Failed to get shared "${NAMES[i]}" lock`, hint };
  return { message: 'ok' };
}

let dir: string;
const handles: FileHandle[] = [];
const imageLocks: ImageLock[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'blockemu-locks-'));
});
afterEach(async () => {
  await Promise.all(imageLocks.splice(0).map((l) => l.release()));
  await Promise.all(handles.splice(0).map((h) => h.close().catch(() => undefined)));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let files = 0;
async function newFile(): Promise<string> {
  const f = join(dir, `img${files++}`);
  await writeFile(f, new Uint8Array(4096));
  return f;
}

/** An ImageLock on a new descriptor (a new open file description) of `file`. */
async function lockOn(file: string): Promise<{ lock: ImageLock; fh: FileHandle }> {
  const fh = await open(file, 'r');
  handles.push(fh);
  const lock = new ImageLock(fh.fd, file);
  imageLocks.push(lock);
  return { lock, fh };
}

/** Whether `lock` may take `p`: 'ok' (and back to nothing), or its refusal. */
async function tryPrepare(lock: ImageLock, p: Perms): Promise<Outcome> {
  try {
    await lock.prepare(p.perm, p.shared);
  } catch (err) {
    expect(err).toBeInstanceOf(ImageLockError);
    const e = err as ImageLockError;
    return e.hint === undefined ? { message: e.message } : { message: e.message, hint: e.hint };
  }
  expect(await lock.abort()).toBeUndefined();
  return { message: 'ok' };
}

/** Runs `fn` with PATH set to `path` (lock-helper looks perl up when it starts it). */
async function withPath<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = path;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

describe.skipIf(!ofd)('ImageLock in one process', () => {
  it('locks byte 100 + i for each permission it holds and 200 + i for each it does not share', async () => {
    const f = await newFile();
    const { lock } = await lockOn(f);
    const seen: Record<string, number[]> = {};
    for (let i = 0; i < 4; i++) {
      await lock.commit(1 << i, ALL);
      seen[`holds ${NAMES[i]}`] = await lockedBytes(f);
      await lock.commit(0, ALL & ~(1 << i));
      seen[`does not share ${NAMES[i]}`] = await lockedBytes(f);
    }
    await lock.commit(QCOW2_RW.perm, QCOW2_RW.shared);
    seen['writable qcow2 file'] = await lockedBytes(f);
    await lock.commit(0, ALL);
    seen['nothing'] = await lockedBytes(f);
    expect(seen).toEqual({
      'holds consistent read': [100],
      'does not share consistent read': [200],
      'holds write': [101],
      'does not share write': [201],
      'holds write unchanged': [102],
      'does not share write unchanged': [202],
      'holds resize': [103],
      'does not share resize': [203],
      'writable qcow2 file': [100, 101, 103, 201, 203],
      nothing: [],
    });
  });

  it('conflicts with another description of the file as another QEMU node would, never with its own', async () => {
    const f = await newFile();
    const a = await lockOn(f);
    const b = await lockOn(f);
    await a.lock.commit(QCOW2_RW.perm, QCOW2_RW.shared);
    const hint = `Is another process using the image [${f}]?`;
    expect(await tryPrepare(b.lock, QCOW2_RW)).toEqual({ message: 'Failed to get "write" lock', hint });
    expect(await tryPrepare(b.lock, QCOW2_RO)).toEqual({ message: 'Failed to get shared "write" lock', hint });
    expect(await tryPrepare(b.lock, { perm: R, shared: ALL })).toEqual({ message: 'ok' });
    // Its own bytes never stand in its way: OFD locks of one open file description do not conflict with each other.
    expect(await tryPrepare(a.lock, { perm: ALL, shared: 0 })).toEqual({ message: 'ok' });
    expect(await lockedBytes(f)).toEqual([100, 101, 103, 201, 203]);
    await expect(b.lock.prepare(W, ALL)).rejects.toMatchObject({ code: 'LOCKED', qmpClass: 'GenericError', errno: undefined });
  });

  it('one helper process answers every request, each on its own', async () => {
    const busy = await newFile();
    const free = await newFile();
    const holder = await lockOn(busy);
    await holder.lock.commit(QCOW2_RW.perm, QCOW2_RW.shared);
    const wants: [string, Perms][] = [
      [busy, QCOW2_RW],
      [busy, QCOW2_RO],
      [busy, { perm: R, shared: ALL }],
      ...Array.from({ length: 5 }, (): [string, Perms] => [free, { perm: R | W, shared: ALL }]),
    ];
    const locks = await Promise.all(wants.map(([file]) => lockOn(file)));
    const before = lockHelperStarts();
    const results = await Promise.allSettled(wants.map(([, p], i) => locks[i]!.lock.prepare(p.perm, p.shared)));
    expect(lockHelperStarts()).toBe(before);
    expect(results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as Error).message))).toEqual([
      'Failed to get "write" lock',
      'Failed to get shared "write" lock',
      'ok',
      ...Array<string>(5).fill('ok'),
    ]);
    expect(await lockedBytes(free)).toEqual([100, 100, 100, 100, 100, 101, 101, 101, 101, 101]);
  });

  it('runs perl only when a byte must change or be tested', async () => {
    const f = await newFile();
    const { lock } = await lockOn(f);
    const spawnsFor = async (op: () => Promise<unknown>) => {
      const before = lockHelperRequests();
      await op();
      return lockHelperRequests() - before;
    };
    expect(await spawnsFor(() => lock.prepare(QCOW2_RW.perm, QCOW2_RW.shared))).toBe(1);
    expect(await spawnsFor(() => lock.commit(QCOW2_RW.perm, QCOW2_RW.shared))).toBe(0); // prepare locked exactly these
    expect(await spawnsFor(() => lock.prepare(R, ALL))).toBe(0); // giving up permissions needs no test
    expect(await spawnsFor(() => lock.abort())).toBe(0);
    expect(await spawnsFor(() => lock.commit(QCOW2_RW.perm, QCOW2_RW.shared))).toBe(0);
    expect(await spawnsFor(() => lock.commit(R, ALL))).toBe(1);
    expect(await lockedBytes(f)).toEqual([100]);
    expect(await spawnsFor(() => lock.prepare(R, ALL))).toBe(0);
    expect(await spawnsFor(() => lock.prepare(R, R | WU))).toBe(1); // sharing less must be tested
  });

  it('abort, and a refused prepare, leave exactly the committed bytes', async () => {
    const f = await newFile();
    const { lock } = await lockOn(f);
    await lock.commit(R, ALL);
    await lock.prepare(QCOW2_RW.perm, QCOW2_RW.shared);
    expect(await lockedBytes(f)).toEqual([100, 101, 103, 201, 203]);
    expect(await lock.abort()).toBeUndefined();
    expect(await lockedBytes(f)).toEqual([100]);
    expect(lock.committed).toEqual({ perm: R, shared: ALL });

    const other = await lockOn(f);
    await other.lock.commit(R | W, ALL);
    await expect(lock.prepare(QCOW2_RW.perm, QCOW2_RW.shared)).rejects.toThrow('Failed to get shared "write" lock');
    expect(await lockedBytes(f)).toEqual([100, 100, 101]);
    const before = lockHelperRequests();
    await lock.commit(R, ALL); // its bytes are known to be exactly the committed ones
    expect(lockHelperRequests()).toBe(before);
  });

  it('lets its locks go when released, and refuses to work after', async () => {
    const f = await newFile();
    const { lock } = await lockOn(f);
    await lock.commit(QCOW2_RW.perm, QCOW2_RW.shared);
    expect(await lockedBytes(f)).toEqual([100, 101, 103, 201, 203]);
    await lock.release();
    expect(await lockedBytes(f)).toEqual([]);
    await expect(lock.prepare(R, ALL)).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('fails a descriptor that is not open alone, as fcntl would', async () => {
    const f = await newFile();
    const good = await lockOn(f);
    const bad = new ImageLock(1_000_000, f);
    const [g, b] = await Promise.allSettled([good.lock.prepare(R, ALL), bad.prepare(R, ALL)]);
    expect(g.status).toBe('fulfilled');
    expect(b).toMatchObject({ status: 'rejected', reason: { message: 'Failed to lock byte 100: Bad file descriptor', code: 'IO', errno: 'EBADF' } });
  });

  it('without perl, rejects every request of the run with a BlockError, and locking=on says why', async () => {
    const f = await newFile();
    const a = await lockOn(f);
    const b = await lockOn(f);
    stopLockHelper(); // the next request starts perl anew, from this PATH
    const results = await withPath(dir, () => Promise.allSettled([a.lock.prepare(R, ALL), b.lock.prepare(R, ALL)]));
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const e = (r as PromiseRejectedResult).reason as BlockError;
      expect(e).toBeInstanceOf(BlockError);
      expect(e.message).toBe('Image locking failed: the lock helper (perl) could not be run: spawn perl ENOENT');
    }
    expect(await resolveLocking('on')).toBe(true); // probed with perl, once per process
    expect(await resolveLocking('off')).toBe(false);

    vi.resetModules(); // a fresh module, so a fresh probe
    const fresh = await import('../../src/image/file-lock.js');
    await withPath(dir, async () => {
      expect(await fresh.ofdLocksAvailable()).toBe(false);
      expect(await fresh.resolveLocking('auto')).toBe(false);
      expect(await fresh.resolveLocking('off')).toBe(false);
      await expect(fresh.resolveLocking('on')).rejects.toMatchObject({
        code: 'UNSUPPORTED',
        message:
          'File lock requested (locking=on) but blockemu cannot take OFD locks here: it takes them through perl, which failed (spawn perl ENOENT); use locking=auto or locking=off',
      });
    });
  });

  it('when perl dies, fails what waits on it and takes its locks along; the next operation sets them again', async () => {
    const fake = join(dir, 'fake-perl');
    await mkdir(fake);
    // Answers two opens and a request (a lock and a test, both done), then dies at the next request.
    await writeFile(join(fake, 'perl'), "#!/bin/sh\nread l; echo 0; read l; echo 0; read l; printf '0\\t0\\n'; read l; kill -9 $$\n");
    await chmod(join(fake, 'perl'), 0o755);
    const f1 = await newFile();
    const f2 = await newFile();
    const a = await lockOn(f1);
    const b = await lockOn(f2);
    stopLockHelper();
    const [pa, cb] = await withPath(`${fake}:${process.env.PATH}`, () => Promise.all([a.lock.prepare(R, ALL), b.lock.commit(R, ALL)]));
    expect(pa).toBeUndefined();
    expect(cb).toBeInstanceOf(BlockError);
    expect(cb!.message).toBe('Image locking failed: the lock helper (perl) was killed by SIGKILL before answering');
    // Whatever the dead helper held is gone: committing again takes the bytes anew, in a new helper.
    const before = lockHelperStarts();
    expect(await a.lock.commit(R, ALL)).toBeUndefined();
    expect(await b.lock.commit(R, ALL)).toBeUndefined();
    expect(lockHelperStarts() - before).toBe(1);
    expect(await lockedBytes(f1)).toEqual([100]);
    expect(await lockedBytes(f2)).toEqual([100]);
  });

  it('does not keep the process alive, and its locks go when the process ends', async () => {
    const f = await newFile();
    const lib = join(BLOCKEMU, '..', '..', 'src', 'image', 'file-lock.js');
    // Takes a lock, says so, waits for a line, then ends by running out of work (no release, no exit call).
    const script = `
      import { open } from 'node:fs/promises';
      const { ImageLock } = await import(${JSON.stringify(lib)});
      const fh = await open(${JSON.stringify(f)}, 'r');
      await new ImageLock(fh.fd, 'f').commit(1, 15);
      process.stdout.write('locked\\n');
      process.stdin.once('data', () => process.stdin.destroy());
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const ended = new Promise<number | null>((r) => child.on('exit', r));
    await new Promise<void>((r) => child.stdout!.once('data', () => r()));
    expect(await lockedBytes(f)).toEqual([100]);
    child.stdin!.write('go\n');
    expect(await ended).toBe(0);
    for (const t0 = Date.now(); (await lockedBytes(f)).length > 0 && Date.now() - t0 < 5000; ) await new Promise((r) => setTimeout(r, 10));
    expect(await lockedBytes(f)).toEqual([]);
  });

  it('a process that exits (process.exit, as a crash fault does) leaves no lock behind once it is gone', async () => {
    const f = await newFile();
    const lib = join(BLOCKEMU, '..', '..', 'src', 'image', 'file-lock.js');
    const script = `
      import { open } from 'node:fs/promises';
      const { ImageLock } = await import(${JSON.stringify(lib)});
      const fh = await open(${JSON.stringify(f)}, 'r');
      await new ImageLock(fh.fd, 'f').commit(2, 15);
      process.exit(3);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'] });
    expect(await new Promise<number | null>((r) => child.on('exit', r))).toBe(3);
    // No waiting: QEMU's locks go with its process, and so must ours (the helper dies in our exit handler, or on EOF).
    expect(await lockedBytes(f)).toEqual([]);
  });

  it('a process killed with SIGKILL leaves no lock behind, even when its helper could not run to notice', async () => {
    const f = await newFile();
    const lib = join(BLOCKEMU, '..', '..', 'src', 'image', 'file-lock.js');
    const script = `
      import { open } from 'node:fs/promises';
      const { ImageLock } = await import(${JSON.stringify(lib)});
      const fh = await open(${JSON.stringify(f)}, 'r');
      await new ImageLock(fh.fd, 'f').commit(4, 15);
      process.stdout.write('locked\\n');
      setInterval(() => undefined, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => child.stdout!.once('data', () => r()));
    expect(await lockedBytes(f)).toEqual([102]);
    // The helper is stopped, so it cannot read EOF from its dead parent: only the kernel (PR_SET_PDEATHSIG) can end it.
    const helper = (await run('pgrep', ['-P', String(child.pid), 'perl'])).stdout.trim();
    expect(helper).toMatch(/^\d+$/);
    process.kill(Number(helper), 'SIGSTOP');
    const ended = new Promise<void>((r) => child.on('exit', () => r()));
    child.kill('SIGKILL');
    await ended;
    const gone = async () => (await run('ps', ['-o', 'stat=', '-p', helper])).stdout.trim().replace(/^Z.*/, '') === '';
    for (let i = 0; i < 500 && !(await gone()); i++) await new Promise((r) => setTimeout(r, 10));
    try {
      expect(await gone(), 'the stopped helper outlived its parent').toBe(true);
      expect(await lockedBytes(f)).toEqual([]);
    } finally {
      if (!(await gone())) process.kill(Number(helper), 'SIGKILL');
    }
  });

  it('kills a perl that does not answer, and fails its requests at once', async () => {
    const fake = join(dir, 'stuck-perl');
    await mkdir(fake);
    await writeFile(join(fake, 'perl'), '#!/bin/sh\nexec sleep 30\n');
    await chmod(join(fake, 'perl'), 0o755);
    const { lock } = await lockOn(await newFile());
    stopLockHelper();
    lockHelperLimits.timeoutMs = 200;
    try {
      const t0 = Date.now();
      await withPath(`${fake}:${process.env.PATH}`, () => expect(lock.prepare(R, ALL)).rejects.toThrow('Image locking failed: the lock helper (perl) did not answer within 0.2 s'));
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      lockHelperLimits.timeoutMs = 30_000;
    }
  });
});

/** QEMU's users of an image, with the permissions their file node takes (blk_new_open, bdrv_default_perms). */
interface QemuUser {
  name: string;
  perms: Perms;
  /** qemu-io's options (it can also request); otherwise qemu-storage-daemon's --blockdev values (it only holds). */
  io?: string[];
  blockdevs?: (file: string) => string[];
}
const QEMU_USERS: QemuUser[] = [
  // qemu-io asks nothing of sharing (no BDRV_O_NO_SHARE) and raw passes its parent's permissions through.
  { name: 'qemu-io -f raw', io: ['-f', 'raw'], perms: { perm: R | W, shared: ALL } },
  { name: 'qemu-io -r -f raw', io: ['-r', '-f', 'raw'], perms: { perm: R, shared: ALL } },
  { name: 'qemu-io -U -r -f raw', io: ['-U', '-r', '-f', 'raw'], perms: { perm: R, shared: ALL } },
  { name: 'qemu-io -f qcow2', io: ['-f', 'qcow2'], perms: QCOW2_RW },
  { name: 'qemu-io -r -f qcow2', io: ['-r', '-f', 'qcow2'], perms: QCOW2_RO },
  // force-share makes the file node share everything.
  { name: 'qemu-io -U -r -f qcow2', io: ['-U', '-r', '-f', 'qcow2'], perms: { perm: R, shared: ALL } },
  {
    name: 'qemu-storage-daemon file+qcow2',
    blockdevs: (f) => [`driver=file,node-name=f,filename=${f}`, 'driver=qcow2,node-name=q,file=f'],
    perms: QCOW2_RW,
  },
];
const REQUESTERS = QEMU_USERS.filter((u) => u.io);

/** Holders only blockemu can play, whose several conflicts show the order in which QEMU checks. */
const ODD_HOLDERS: { name: string; perms: Perms }[] = [
  { name: 'all, sharing nothing', perms: { perm: ALL, shared: 0 } },
  { name: 'write unchanged + resize', perms: { perm: WU | RS, shared: ALL } },
  { name: 'write + resize, resize unshared', perms: { perm: W | RS, shared: ALL & ~RS } },
  { name: 'write unshared', perms: { perm: 0, shared: ALL & ~W } },
];

describe.skipIf(!ofd || !qemu.available || !qemu.storageDaemon)('image locks against QEMU 7.2', () => {
  let image: string;
  beforeAll(async () => {
    image = join(dir, 'disk.qcow2');
    expect((await run('qemu-img', ['create', '-q', '-f', 'qcow2', image, '1M'])).code).toBe(0);
  });
  afterEach(async () => {
    expect(await lockedBytes(image)).toEqual([]); // every holder let go
  });

  const holdWithQemu = (u: QemuUser, file = image): Promise<Holder> => (u.io ? holdWithQemuIo(u.io, file) : holdWithQsd(u.blockdevs!(file), file));
  const hint = () => `Is another process using the image [${image}]?`;

  it("blockemu holding a writable qcow2's file locks: which qemu-io may open the image", async () => {
    const { lock, fh } = await lockOn(image);
    await lock.commit(QCOW2_RW.perm, QCOW2_RW.shared);
    expect(await run('qemu-io', ['-f', 'raw', '-c', 'read 0 512', image])).toMatchObject({
      code: 1,
      stderr: `qemu-io: can't open device ${image}: Failed to get "write" lock\nIs another process using the image [${image}]?\n`,
    });
    expect(await qemuIoOpens(['-f', 'qcow2'], image)).toEqual({ message: 'Failed to get "write" lock', hint: hint() });
    expect(await qemuIoOpens(['-r', '-f', 'qcow2'], image)).toEqual({ message: 'Failed to get shared "write" lock', hint: hint() });
    // A read-only raw user shares everything, so it does not mind writers.
    expect(await qemuIoOpens(['-r', '-f', 'raw'], image)).toEqual({ message: 'ok' });
    expect(await qemuIoOpens(['-U', '-r', '-f', 'qcow2'], image)).toEqual({ message: 'ok' });

    await lock.commit(QCOW2_RO.perm, QCOW2_RO.shared);
    expect(await lockedBytes(image)).toEqual([100, 201, 203]);
    expect(await qemuIoOpens(['-r', '-f', 'qcow2'], image)).toEqual({ message: 'ok' });
    expect(await qemuIoOpens(['-f', 'raw'], image)).toEqual({ message: 'Failed to get "write" lock', hint: hint() });
    expect(await qemuIoOpens(['-f', 'qcow2'], image)).toEqual({ message: 'Failed to get "write" lock', hint: hint() });

    await lock.release();
    for (const u of REQUESTERS) expect(await qemuIoOpens(u.io!, image), u.name).toEqual({ message: 'ok' });
  });

  it('qemu-io holding the image: ImageLock.prepare refuses in QEMU words', async () => {
    const { lock } = await lockOn(image);
    const q = await holdWithQemuIo(['-f', 'qcow2'], image);
    try {
      await expect(lock.prepare(QCOW2_RW.perm, QCOW2_RW.shared)).rejects.toMatchObject({
        message: 'Failed to get "write" lock',
        hint: hint(),
        code: 'LOCKED',
        qmpClass: 'GenericError',
      });
      expect(await tryPrepare(lock, QCOW2_RO)).toEqual({ message: 'Failed to get shared "write" lock', hint: hint() });
      expect(await tryPrepare(lock, { perm: R, shared: ALL })).toEqual({ message: 'ok' });
    } finally {
      await q.stop();
    }
    const raw = await holdWithQemuIo(['-f', 'raw'], image);
    try {
      expect(await tryPrepare(lock, QCOW2_RW)).toEqual({ message: 'Failed to get shared "write" lock', hint: hint() });
      expect(await tryPrepare(lock, { perm: R | W, shared: ALL })).toEqual({ message: 'ok' }); // two raw writers coexist
    } finally {
      await raw.stop();
    }
  });

  it('takes the bytes each QEMU user takes for the same permissions', async () => {
    const qemuBytes: Record<string, number[]> = {};
    const ourBytes: Record<string, number[]> = {};
    const ruleBytes: Record<string, number[]> = {};
    for (const u of QEMU_USERS) {
      const q = await holdWithQemu(u);
      qemuBytes[u.name] = await lockedBytes(image);
      await q.stop();
      const { lock, fh } = await lockOn(image);
      await lock.commit(u.perms.perm, u.perms.shared);
      ourBytes[u.name] = await lockedBytes(image);
      await lock.release();
      ruleBytes[u.name] = bytesOf(u.perms);
    }
    expect(qemuBytes).toEqual(ruleBytes);
    expect(ourBytes).toEqual(ruleBytes);
  });

  it('refuses and allows exactly what QEMU does, holder and requester played by QEMU or blockemu', async () => {
    // Each holder on its own copy of the image, so that all of them are asked at once (and blockemu's requests share perl runs).
    const cases = [
      ...QEMU_USERS.flatMap((u) => [{ name: u.name, perms: u.perms, qemu: u }, { name: u.name, perms: u.perms, qemu: undefined }]),
      ...ODD_HOLDERS.map((h) => ({ ...h, qemu: undefined })),
    ].map((c, i) => ({ ...c, file: join(dir, `table${i}.qcow2`), by: c.qemu ? 'QEMU' : 'blockemu' }));
    await Promise.all(cases.map((c) => copyFile(image, c.file)));
    const held = await Promise.all(
      cases.map(async (c): Promise<Holder> => {
        if (c.qemu) return holdWithQemu(c.qemu, c.file);
        const { lock, fh } = await lockOn(c.file);
        await lock.commit(c.perms.perm, c.perms.shared);
        return { stop: () => lock.release() };
      }),
    );
    const expected: Record<string, Outcome> = {};
    const actual: Record<string, Outcome> = {};
    try {
      for (const r of REQUESTERS) {
        await Promise.all(
          cases.map(async (c) => {
            const row = (by: string) => `${c.name} (${c.by}) <- ${r.name} (${by})`;
            expected[row('QEMU')] = expected[row('blockemu')] = rule(c.perms, r.perms, c.file);
            actual[row('QEMU')] = await qemuIoOpens(r.io!, c.file);
            actual[row('blockemu')] = await tryPrepare((await lockOn(c.file)).lock, r.perms);
          }),
        );
      }
    } finally {
      await Promise.all(held.map((h) => h.stop()));
    }
    expect(actual).toEqual(expected);
    // Not vacuous: the pairs hold refusals of every kind, some where QEMU's order of checks decides which one.
    expect(new Set(Object.values(expected).map((o) => o.message))).toEqual(
      new Set([
        'ok',
        'Failed to get "write" lock',
        'Failed to get shared "write" lock',
        'Failed to get "consistent read" lock',
        'Failed to get shared "resize" lock',
        'Failed to get "resize" lock',
      ]),
    );
    for (const c of cases) expect(await lockedBytes(c.file), c.file).toEqual([]);
  });

  it('against each QEMU holder, every single-sided request follows the same rule (15 at once)', async () => {
    const expected: Record<string, Outcome> = {};
    const actual: Record<string, Outcome> = {};
    const sets = [Array.from({ length: 15 }, (_, i) => ({ perm: i + 1, shared: ALL })), Array.from({ length: 15 }, (_, i) => ({ perm: 0, shared: i }))];
    for (const u of QEMU_USERS) {
      const q = await holdWithQemu(u);
      try {
        // Perm-only requests lock only bytes 100 + i and test only 200 + i (and the reverse), so one run cannot disturb itself.
        for (const set of sets) {
          const locks = await Promise.all(set.map(() => lockOn(image)));
          const got = await Promise.allSettled(set.map((p, i) => locks[i]!.lock.prepare(p.perm, p.shared)));
          set.forEach((p, i) => {
            const key = `${u.name} <- perm ${p.perm} shared ${p.shared}`;
            expected[key] = rule(u.perms, p, image);
            const g = got[i]!;
            actual[key] = g.status === 'fulfilled' ? { message: 'ok' } : { message: (g.reason as ImageLockError).message, hint: (g.reason as ImageLockError).hint! };
          });
          await Promise.all(locks.map((l) => l.lock.abort()));
        }
      } finally {
        await q.stop();
      }
    }
    expect(actual).toEqual(expected);
  });
});
