import { type ChildProcess, spawn } from 'node:child_process';
import { constants, writevSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { prctlSyscall } from '../../image/lock-helper.js';
import { BlockError } from '../../image/errors.js';
import type { Logger } from '../../log.js';
import { type FuseRequest, IN_HEADER_SIZE, READ_BUFFER_SIZE, parseRequest, replyHeader } from './protocol.js';

/**
 * The reader: a perl process that reads /dev/fuse (its descriptor 3) and
 * copies each request, whole, to its stdout. A read there blocks until the
 * kernel has a request, which Node can neither wait for on its event loop
 * (the device is no socket) nor leave to its thread pool (one of four
 * threads held for the export's life); a worker thread blocked in it
 * keeps the process from exiting, while a process can always be killed,
 * and a polling reader made each round trip 2.5 times longer. perl-base
 * is already what takes the image locks (src/image/lock-helper.ts).
 * ARGV: the prctl syscall number, our pid (PR_SET_PDEATHSIG with SIGKILL,
 * as the lock helper: it dies with us) and the read size. It ends when
 * the kernel ends the connection (ENODEV), printing the errno.
 */
const READER = String.raw`
syscall($ARGV[0], 1, 9);
exit 0 if getppid() != $ARGV[1];
open(my $dev, '+<&=', 3) or die "fd 3: $!\n";
binmode STDOUT;
my $buf;
while (1) {
    my $n = sysread($dev, $buf, $ARGV[2]);
    if (!defined $n) {
        # EINTR, or ENOENT: the request was interrupted before it was read.
        next if $! == 4 || $! == 2;
        print STDERR ($! + 0), "\n";
        exit 0;
    }
    exit 0 if $n == 0;
    for (my $off = 0; $off < $n; ) {
        my $w = syswrite(STDOUT, $buf, $n - $off, $off);
        if (!defined $w) { next if $! == 4; exit 0 }
        $off += $w;
    }
}
`;

/** Runs mount(8) or umount(8); resolves with its stderr when it fails (undefined when it succeeded). */
function runTool(cmd: string, args: string[], fd?: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe', ...(fd === undefined ? [] : [fd])] });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e) => resolve(e.message));
    p.on('close', (code) => resolve(code === 0 ? undefined : err.trim() || `${cmd} exited with status ${code}`));
  });
}

export interface MountOptions {
  mountpoint: string;
  allowOther: boolean;
  /** Told of each request the kernel sends, and the session to answer it on. */
  onRequest: (req: FuseRequest, session: FuseSession) => void;
  log?: Logger;
}

/**
 * A mounted FUSE connection (what libfuse's fuse_session is to QEMU's
 * export): /dev/fuse opened, the regular file `mountpoint` covered by a
 * mount of type fuse whose root is a regular file, and the requests read
 * from it. Mounting goes through mount(8), the descriptor passed as the
 * `fd` option, so it needs root, as mount(2) does; libfuse's fallback for
 * other users, fusermount3, returns the descriptor over SCM_RIGHTS, which
 * Node cannot receive.
 */
export class FuseSession {
  private reader: ChildProcess | undefined;
  private readerDone: Promise<void> = Promise.resolve();
  private mounted = false;
  private closed = false;
  /** Bytes read from the reader that do not make a whole request yet. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  private constructor(
    private readonly dev: FileHandle,
    private readonly o: MountOptions,
  ) {}

  /** Opens /dev/fuse and mounts; fails with QEMU's message (the tool's own words go to the log). */
  static async mount(o: MountOptions): Promise<FuseSession> {
    let dev: FileHandle;
    try {
      dev = await open('/dev/fuse', constants.O_RDWR);
    } catch (err) {
      o.log?.warn({ err }, 'cannot open /dev/fuse');
      throw new BlockError('IO', 'Failed to mount FUSE session to export', { errno: 'EIO' });
    }
    const s = new FuseSession(dev, o);
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const opts = [`fd=3`, `rootmode=${constants.S_IFREG.toString(8)}`, `user_id=${uid}`, `group_id=${gid}`, `max_read=${READ_BUFFER_SIZE - 4096}`, 'default_permissions'];
    if (o.allowOther) opts.push('allow_other');
    // -i: no mount.fuse helper, -n: no mtab, -c: the path as given; the kernel reads the options.
    const failed = await runTool('mount', ['-i', '-n', '-c', '-t', 'fuse', '-o', opts.join(','), 'blockemu', o.mountpoint], dev.fd);
    if (failed !== undefined) {
      o.log?.warn({ mountpoint: o.mountpoint, error: failed }, 'FUSE mount failed');
      await dev.close();
      throw new BlockError('IO', 'Failed to mount FUSE session to export', { errno: 'EIO' });
    }
    s.mounted = true;
    // Only now: a read of /dev/fuse before the mount fails with EPERM.
    try {
      await s.startReader();
    } catch (err) {
      // Nobody would answer: unmount before anything waits on the file.
      o.log?.warn({ err }, 'the FUSE reader (perl) could not be started');
      await s.close();
      throw new BlockError('IO', 'Failed to mount FUSE session to export', { errno: 'EIO' });
    }
    return s;
  }

  /** Starts the reader; resolves once it runs. */
  private startReader(): Promise<void> {
    const child = spawn('perl', ['-e', READER, String(prctlSyscall()), String(process.pid), String(READ_BUFFER_SIZE)], {
      stdio: ['ignore', 'pipe', 'pipe', this.dev.fd],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
    });
    this.reader = child;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => this.received(d));
    this.readerDone = new Promise((resolve) => {
      child.once('error', () => resolve());
      child.once('close', (code, signal) => {
        this.reader = undefined;
        // 19: ENODEV, the connection ended (an unmount); a kill is our own close.
        if (signal === null && stderr.trim() !== '19') this.o.log?.warn({ status: code, error: stderr.trim() }, 'the FUSE reader stopped');
        // Gone while mounted (killed by someone else): end the connection, so that users fail with ENOTCONN instead of waiting forever, as after a crash of QEMU.
        if (this.mounted && !this.closed) {
          this.closed = true;
          void this.dev.close().catch(() => undefined);
        }
        resolve();
      });
    });
    return new Promise((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', reject);
    });
  }

  /** Splits the reader's output into requests: each starts with its own length. */
  private received(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= 4) {
      if (this.pending[0]!.length < 4) this.pending = [Buffer.concat(this.pending)];
      const len = this.pending[0]!.readUInt32LE(0);
      if (len < IN_HEADER_SIZE) {
        // Not a request the kernel could send: the framing is lost, and with it every request after.
        this.o.log?.error({ length: len }, 'the FUSE reader sent a malformed request; no more requests are answered');
        this.pending = [];
        this.pendingBytes = 0;
        this.reader?.kill('SIGKILL');
        return;
      }
      if (this.pendingBytes < len) return;
      let msg: Buffer;
      const first = this.pending[0]!;
      if (first.length >= len) {
        msg = first.subarray(0, len);
        if (first.length === len) this.pending.shift();
        else this.pending[0] = first.subarray(len);
      } else {
        const all = Buffer.concat(this.pending);
        msg = all.subarray(0, len);
        this.pending = all.length > len ? [all.subarray(len)] : [];
      }
      this.pendingBytes -= len;
      this.o.onRequest(parseRequest(msg), this);
    }
  }

  /**
   * Answers a request: the error (an errno number, 0 for success) and the
   * reply's body, in one write. The write is made here and now, as libuv
   * writes to a socket: writing to /dev/fuse never waits (it hands the
   * answer to the waiting request and returns), and a trip through the
   * thread pool doubled a request's latency.
   */
  reply(unique: bigint, errno: number, ...body: Buffer[]): void {
    if (this.closed) return;
    const len = body.reduce((n, b) => n + b.length, 0);
    try {
      writevSync(this.dev.fd, [replyHeader(unique, errno, len), ...body]);
    } catch (err) {
      // ENOENT: the request was interrupted or the connection is gone; nobody waits for the answer.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENODEV') this.o.log?.warn({ err }, 'answering a FUSE request failed');
    }
  }

  /**
   * Unmounts (lazily, as libfuse does: a file still open there fails with
   * ENOTCONN from now on), then stops the reader and closes the device,
   * which ends the connection. The reader runs until umount(8) is done:
   * umount may itself ask the file system something.
   */
  async close(): Promise<void> {
    if (!this.mounted) return;
    this.mounted = false;
    const failed = await runTool('umount', ['-i', '-n', '-c', '-l', this.o.mountpoint]);
    // Unmounted by someone else (the reader then ended with ENODEV): nothing to say.
    if (failed !== undefined && this.reader) this.o.log?.warn({ mountpoint: this.o.mountpoint, error: failed }, 'FUSE unmount failed');
    this.reader?.kill('SIGKILL');
    await this.readerDone;
    if (this.closed) return;
    this.closed = true;
    await this.dev.close();
  }
}
