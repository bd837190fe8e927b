import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { BlockError } from './errors.js';

/**
 * Byte-range OFD locks set, cleared and tested by a short perl program, since
 * Node has no fcntl. Our descriptors are handed to perl through spawn's stdio
 * array, so perl works on OUR open file descriptions: the locks it sets stay
 * with them after perl exits and go exactly when we close the descriptor (or
 * die), as QEMU's do; answers are given once perl has exited, so that its
 * copies are gone too. A spawn costs ~10 ms, so every request made in one
 * event-loop turn goes to one perl run (flushed by setImmediate).
 */

export type StepKind = 'lock' | 'unlock' | 'test';

/** lock: F_RDLCK on the byte; unlock: F_UNLCK; test: would F_WRLCK conflict with another description's lock? */
export interface LockStep {
  readonly kind: StepKind;
  readonly byte: number;
}

/** What one descriptor needs: `steps` run in order up to the first failure; `undo` runs only after one. */
export interface LockRequest {
  readonly fd: number;
  readonly steps: readonly LockStep[];
  readonly undo: readonly LockStep[];
}

/** errno 0: done. A test that finds a conflicting lock fails with EAGAIN, as qemu_lock_fd_test says. */
export interface StepOutcome {
  readonly step: LockStep;
  readonly errno: number;
  /** strerror(errno) in the C locale; '' when errno is 0. */
  readonly message: string;
}

/** The steps perl ran (those after a failed one are left out) and, after a failure, the undo steps. */
export interface LockReply {
  readonly steps: readonly StepOutcome[];
  readonly undo: readonly StepOutcome[];
}

export const EAGAIN = constants.errno.EAGAIN;

/**
 * The helper. Kept free of modules (not even strict) so perl starts as fast as
 * it can; perl-base alone runs it. The struct flock layout is Linux's on
 * 64-bit x86 and Arm (file-lock.ts refuses other machines).
 */
const SCRIPT = String.raw`
# Each argument is one request: "FD STEP... [| UNDO...]". FD is an inherited
# descriptor; a STEP is l<byte> (read-lock it), u<byte> (unlock it) or t<byte>
# (test a write lock on it). Steps run up to the first failure; only then do
# the UNDO steps run. Per request one line: per step run, tab-separated, "0"
# or "errno strerror" (EAGAIN when a test finds another description's lock).
# F_OFD_GETLK = 36, F_OFD_SETLK = 37: the locks belong to the open file
# description, which blockemu shares, so they outlive this process.
$| = 1;
my %fh;
for my $req (@ARGV) {
    my ($fd, @steps) = split ' ', $req;
    $fd //= '';
    # One handle per descriptor, kept to the end: dropping it would close the descriptor.
    my $bad = $fh{$fd} ? 0 : $fd !~ /^\d+$/ ? 22 : open($fh{$fd}, '<&=', $fd) ? 0 : $! + 0;
    delete $fh{$fd} if $bad;
    my ($failed, $undo, @out) = (0, 0);
    for my $s (@steps) {
        if ($s eq '|') { last unless $failed; $undo = 1; next }
        next if $failed && !$undo;
        my $e = $bad || step($fh{$fd}, $s);
        $failed ||= $e;
        push @out, $e ? "$e " . do { local $! = $e; "$!" } : '0';
    }
    print join("\t", @out), "\n";
}
sub step {
    my ($fh, $s) = @_;
    my ($k, $byte) = $s =~ /^([lut])(\d+)$/ or return 22;
    # struct flock: l_type (F_RDLCK 0, F_WRLCK 1, F_UNLCK 2), l_whence, l_start,
    # l_len, l_pid (0, as OFD requests must have)
    my $fl = pack('s s x4 q q i x4', $k eq 'l' ? 0 : $k eq 'u' ? 2 : 1, 0, $byte, 1, 0);
    my $ok;
    do { $ok = fcntl($fh, $k eq 't' ? 36 : 37, $fl) } until $ok || $! != 4;
    return $! + 0 unless $ok;
    return 0 if $k ne 't';
    return unpack('s', $fl) == 2 ? 0 : 11;
}
`;

/** Descriptors per perl run: the child gets them as 3, 4, …, which must stay under its RLIMIT_NOFILE. */
const MAX_FDS_PER_RUN = 256;
/** perl never blocks (F_OFD_SETLK does not wait): a run that takes `timeoutMs` is stuck and is killed. Tests shorten it. */
export const lockHelperLimits = { timeoutMs: 30_000 };
/** A reply line is a few bytes per step; anything this long is not one. */
const MAX_LINE = 64 * 1024;

interface Pending {
  readonly req: LockRequest;
  resolve(reply: LockReply): void;
  reject(err: BlockError): void;
}

let queue: Pending[] = [];
let spawns = 0;

/** How many times perl has been started in this process; tests use it to see batching and skipped runs. */
export function lockHelperSpawns(): number {
  return spawns;
}

/** Queues `req` for this turn's perl run. Rejects with a BlockError ('IO') when perl cannot answer it. */
export function runLockRequest(req: LockRequest): Promise<LockReply> {
  return new Promise((resolve, reject) => {
    if (queue.length === 0) setImmediate(flush);
    queue.push({ req, resolve, reject });
  });
}

function flush(): void {
  const all = queue;
  queue = [];
  let batch: Pending[] = [];
  const fds = new Set<number>();
  for (const p of all) {
    if (!fds.has(p.req.fd) && fds.size === MAX_FDS_PER_RUN) {
      runBatch(batch);
      batch = [];
      fds.clear();
    }
    fds.add(p.req.fd);
    batch.push(p);
  }
  if (batch.length > 0) runBatch(batch);
}

const CODE = { lock: 'l', unlock: 'u', test: 't' } as const;

function encode(req: LockRequest, childFd: number): string {
  const steps = req.steps.map((s) => CODE[s.kind] + s.byte);
  const undo = req.undo.length > 0 ? ['|', ...req.undo.map((s) => CODE[s.kind] + s.byte)] : [];
  return [String(childFd), ...steps, ...undo].join(' ');
}

/** Parses one reply line; undefined when it does not fit the request (perl misbehaved). */
function decode(req: LockRequest, line: string): LockReply | undefined {
  const fields = line === '' ? [] : line.split('\t');
  const outcomes: { errno: number; message: string }[] = [];
  for (const f of fields) {
    const m = /^(\d+)(?: (.*))?$/.exec(f);
    if (!m) return undefined;
    outcomes.push({ errno: Number(m[1]), message: m[2] ?? '' });
  }
  const steps: StepOutcome[] = [];
  let i = 0;
  for (const step of req.steps) {
    const o = outcomes[i++];
    if (!o) return undefined;
    steps.push({ step, ...o });
    if (o.errno !== 0) break;
  }
  const failed = steps.some((s) => s.errno !== 0);
  const undo: StepOutcome[] = [];
  if (failed) {
    for (const step of req.undo) {
      const o = outcomes[i++];
      if (!o) return undefined;
      undo.push({ step, ...o });
    }
  }
  return i === outcomes.length ? { steps, undo } : undefined;
}

/** The reply perl gives for a descriptor that is not open: the first step fails with EBADF, and so does every undo step. */
function badDescriptor(req: LockRequest): LockReply {
  const fail = (step: LockStep): StepOutcome => ({ step, errno: constants.errno.EBADF, message: 'Bad file descriptor' });
  return { steps: req.steps.slice(0, 1).map(fail), undo: req.steps.length > 0 ? req.undo.map(fail) : [] };
}

function helperError(what: string, cause?: unknown): BlockError {
  return new BlockError('IO', `Image locking failed: the lock helper (perl) ${what}`, { errno: 'EIO', cause });
}

function runBatch(batch: Pending[]): void {
  const fds = [...new Set(batch.map((p) => p.req.fd))];
  const childFd = new Map(fds.map((fd, i) => [fd, 3 + i]));
  const args = ['-e', SCRIPT, '--', ...batch.map((p) => encode(p.req, childFd.get(p.req.fd)!))];
  let child: ChildProcess;
  try {
    // A clean environment: no PERL5OPT or PERL5LIB to load anything, and C-locale strerror texts as QEMU prints them.
    child = spawn('perl', args, { stdio: ['ignore', 'pipe', 'pipe', ...fds], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } });
  } catch (err) {
    // Thrown at once for a descriptor that is not open (EBADF): run each request alone, so only its owner fails,
    // and fails as fcntl would have failed on it.
    if (batch.length > 1) for (const p of batch) runBatch([p]);
    else if ((err as NodeJS.ErrnoException).code === 'EBADF') batch[0]!.resolve(badDescriptor(batch[0]!.req));
    else batch[0]!.reject(helperError(`could not be started: ${(err as Error).message}`, err));
    return;
  }
  spawns++;
  let next = 0;
  let out = '';
  let err = '';
  // Answers are given out only once perl is gone: until then its copies of our descriptors keep their open file
  // descriptions, and so their locks, alive (a descriptor closed right after its answer would leave its locks behind).
  const answered: Array<() => void> = [];
  const failRest = (e: BlockError) => {
    for (const give of answered.splice(0)) give();
    while (next < batch.length) batch[next++]!.reject(e);
  };
  // Killed rather than waited for: while it lives, perl's copies of our descriptors would keep their locks.
  // Its requests fail at once ('close' would also wait for anything that inherited its stdout).
  const kill = (why: string) => {
    child.kill('SIGKILL');
    failRest(helperError(why));
  };
  const timeoutMs = lockHelperLimits.timeoutMs;
  const timer = setTimeout(() => kill(`did not answer within ${timeoutMs / 1000} s`), timeoutMs);
  timer.unref();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (let nl = out.indexOf('\n'); nl >= 0 && next < batch.length; nl = out.indexOf('\n')) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      const p = batch[next++]!;
      const reply = decode(p.req, line);
      const wrong = reply ? undefined : helperError(`answered ${JSON.stringify(line)} to ${JSON.stringify(encode(p.req, childFd.get(p.req.fd)!))}`);
      answered.push(() => (reply ? p.resolve(reply) : p.reject(wrong!)));
    }
    if (out.length > MAX_LINE) kill(`wrote a line longer than ${MAX_LINE} characters`);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    if (err.length < 4096) err += chunk;
  });
  child.on('error', (e) => {
    clearTimeout(timer);
    failRest(helperError(`could not be run: ${e.message}`, e));
  });
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
    const said = err.trim() === '' ? '' : `: ${err.trim()}`;
    failRest(helperError(`${how} before answering${said}`));
  });
}
