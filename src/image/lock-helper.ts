import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { BlockError } from './errors.js';

/**
 * Byte-range OFD locks set, cleared and tested by one long-lived perl
 * process, since Node has no fcntl. Spawning perl per request cost 10–30 ms
 * of blocked event loop each (fork of a large process), several per mirror
 * start or tool run; one helper per process costs one spawn.
 *
 * Node cannot hand a descriptor to a running process, so perl opens the file
 * anew through /proc/PID/fd/N: a new open file description of the same
 * file, which holds the locks. Other processes see them exactly as they
 * would see ours (OFD locks conflict between descriptions, never within
 * one), and they go when we close the description here or when perl exits.
 * perl asks the kernel to kill it when we die (PR_SET_PDEATHSIG): a
 * SIGKILLed blockemu leaves no locks behind for the next process, as a
 * killed QEMU leaves none (the iotests' _cleanup_qemu kills, then the test
 * writes the images at once). Reading EOF from us was too late for that.
 */

export type StepKind = 'lock' | 'unlock' | 'test';

/** lock: F_RDLCK on the byte; unlock: F_UNLCK; test: would F_WRLCK conflict with another description's lock? */
export interface LockStep {
  readonly kind: StepKind;
  readonly byte: number;
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
const EBADF = constants.errno.EBADF;
const ENOENT = constants.errno.ENOENT;

/**
 * The helper, kept free of modules (not even strict) so perl starts as fast
 * as it can; perl-base alone runs it. The struct flock layout is Linux's on
 * 64-bit x86 and Arm (file-lock.ts refuses other machines).
 */
export const HELPER_MARKER = '# blockemu lock helper';

const SCRIPT = String.raw`
${HELPER_MARKER}
# One request per line, one answer line each, in order:
#   o ID PATH          open PATH read-only as description ID: "0" or "errno strerror"
#   r ID STEP... [| UNDO...]
#                      a STEP is l<byte> (read-lock it), u<byte> (unlock it) or t<byte>
#                      (test a write lock on it); steps run up to the first failure, only
#                      then the UNDO steps. Per step run, tab-separated, "0" or "errno
#                      strerror" (EAGAIN when a test finds another description's lock).
#   c ID               close description ID, and its locks with it: "0"
#   h ID OFFSET        where data and the hole after it start from OFFSET (lseek SEEK_DATA,
#                      then SEEK_HOLE): "0 DATA HOLE" or "errno strerror" (ENXIO: a hole to EOF)
# F_OFD_GETLK = 36, F_OFD_SETLK = 37: the locks belong to the open file description.
# ARGV: the prctl syscall number and our parent's pid. PR_SET_PDEATHSIG (1) with SIGKILL (9):
# killed with its parent; a parent gone before that (we were re-parented) ends us now.
syscall($ARGV[0], 1, 9);
exit 0 if getppid() != $ARGV[1];
$| = 1;
my %fh;
while (defined(my $line = <STDIN>)) {
    my ($op, $id, @args) = split ' ', $line;
    $op //= '';
    if ($op eq 'o') {
        if (defined $args[0] && open(my $h, '<', $args[0])) { $fh{$id} = $h; print "0\n" }
        else { my $e = ($! + 0) || 22; local $! = $e; print "$e $!\n" }
    } elsif ($op eq 'c') {
        close(delete $fh{$id}) if defined $id && $fh{$id};
        print "0\n";
    } elsif ($op eq 'h') {
        my $h = defined $id ? $fh{$id} : undef;
        my $d = $h && defined $args[0] ? sysseek($h, $args[0], 3) : undef;
        my $x = defined $d ? sysseek($h, $d, 4) : undef;
        if (defined $x) { print "0 ", $d + 0, " ", $x + 0, "\n" }
        else { my $e = $h ? ($! + 0) || 22 : 9; local $! = $e; print "$e $!\n" }
    } elsif ($op eq 'r') {
        my $h = defined $id ? $fh{$id} : undef;
        my ($failed, $undo, @out) = (0, 0);
        for my $s (@args) {
            if ($s eq '|') { last unless $failed; $undo = 1; next }
            next if $failed && !$undo;
            my $e = $h ? step($h, $s) : 9;
            $failed ||= $e;
            push @out, $e ? "$e " . do { local $! = $e; "$!" } : '0';
        }
        print join("\t", @out), "\n";
    } else {
        print "22 Invalid argument\n";
    }
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

/** Linux's prctl syscall number (file-lock.ts refuses other machines; -1 there would only fail with ENOSYS). */
const PRCTL: Partial<Record<string, number>> = { x64: 157, arm64: 167 };

/** The prctl syscall number for a perl helper's PR_SET_PDEATHSIG (-1 on a machine not listed: the call fails with ENOSYS). */
export const prctlSyscall = (): number => PRCTL[process.arch] ?? -1;

/** perl never blocks (F_OFD_SETLK does not wait): a request unanswered for `timeoutMs` means it is stuck, and it is killed. Tests shorten it. */
export const lockHelperLimits = { timeoutMs: 30_000 };
/** A reply line is a few bytes per step; anything this long is not one. */
const MAX_LINE = 64 * 1024;

let starts = 0;
let requests = 0;

/** How many times perl has been started in this process (once, unless it died or was stopped). */
export function lockHelperStarts(): number {
  return starts;
}

/** How many lock requests (runs of steps) have been sent; tests use it to see requests that were skipped. */
export function lockHelperRequests(): number {
  return requests;
}

function helperError(what: string, cause?: unknown): BlockError {
  return new BlockError('IO', `Image locking failed: the lock helper (perl) ${what}`, { errno: 'EIO', cause });
}

interface Waiter {
  resolve(line: string): void;
  reject(err: BlockError): void;
}

/** One perl process and the requests waiting on it, answered in order. */
class HelperProcess {
  private readonly waiting: Waiter[] = [];
  private out = '';
  private err = '';
  private timer: NodeJS.Timeout | undefined;
  private nextId = 1;
  dead: BlockError | undefined;

  get process(): ChildProcess {
    return this.child;
  }

  constructor(private readonly child: ChildProcess) {
    starts++;
    // The helper never keeps the process alive: its pipes count only while an answer is awaited.
    child.unref();
    this.pipes(false);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => this.onData(chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      if (this.err.length < 4096) this.err += chunk;
    });
    child.stdin!.on('error', () => undefined); // a dead perl is reported by 'close'
    child.on('error', (e) => this.fail(helperError(`could not be run: ${e.message}`, e)));
    child.on('close', (code, signal) => {
      const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
      const said = this.err.trim() === '' ? '' : `: ${this.err.trim()}`;
      this.fail(helperError(`${how} before answering${said}`));
    });
  }

  newId(): number {
    return this.nextId++;
  }

  /** Sends one request line; resolves with its answer line. */
  ask(line: string): Promise<string> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (this.waiting.length === 1) this.pipes(true);
      this.armTimer();
      this.child.stdin!.write(line + '\n');
    });
  }

  kill(why: string): void {
    this.fail(helperError(why));
    this.child.kill('SIGKILL');
  }

  private onData(chunk: string): void {
    this.out += chunk;
    for (let nl = this.out.indexOf('\n'); nl >= 0; nl = this.out.indexOf('\n')) {
      const line = this.out.slice(0, nl);
      this.out = this.out.slice(nl + 1);
      const w = this.waiting.shift();
      if (!w) return this.kill(`answered ${JSON.stringify(line)} to no request`);
      w.resolve(line);
    }
    if (this.out.length > MAX_LINE) return this.kill(`wrote a line longer than ${MAX_LINE} characters`);
    if (this.waiting.length === 0) this.pipes(false);
    this.armTimer();
  }

  private armTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.waiting.length === 0 || this.dead) return;
    const ms = lockHelperLimits.timeoutMs;
    this.timer = setTimeout(() => this.kill(`did not answer within ${ms / 1000} s`), ms);
    this.timer.unref();
  }

  private pipes(ref: boolean): void {
    for (const s of [this.child.stdout, this.child.stderr] as (Readable & { ref?(): void; unref?(): void })[]) {
      if (ref) s.ref?.();
      else s.unref?.();
    }
    const stdin = this.child.stdin as Writable & { ref?(): void; unref?(): void };
    if (ref) stdin.ref?.();
    else stdin.unref?.();
  }

  private fail(err: BlockError): void {
    if (this.dead) return;
    this.dead = err;
    clearTimeout(this.timer);
    if (current === this) current = undefined;
    for (const w of this.waiting.splice(0)) w.reject(err);
    this.pipes(false);
  }
}

let current: HelperProcess | undefined;
let exitHook = false;

/**
 * At process exit the helper is killed and waited for, so that whoever sees
 * this process gone also finds its locks gone, as with QEMU's own (perl
 * would otherwise close its descriptions a moment later, on reading EOF).
 * Synchronous: an 'exit' handler can run nothing else.
 */
function killAtExit(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 1000; i++) {
    let state: string;
    try {
      state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] ?? 'Z';
    } catch {
      return; // reaped
    }
    if (state === 'Z' || state === 'X') return; // dead: its descriptors are closed
    Atomics.wait(nap, 0, 0, 1);
  }
}

function helper(): HelperProcess {
  if (current) return current;
  let child: ChildProcess;
  try {
    // A clean environment: no PERL5OPT or PERL5LIB to load anything, and C-locale strerror texts as QEMU prints them.
    child = spawn('perl', ['-e', SCRIPT, String(prctlSyscall()), String(process.pid)], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } });
  } catch (err) {
    throw helperError(`could not be started: ${(err as Error).message}`, err);
  }
  current = new HelperProcess(child);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      if (current) killAtExit(current.process);
    });
  }
  return current;
}

/** Stops the helper (its descriptions, and so their locks, go with it); the next request starts a new one. For tests. */
export function stopLockHelper(): void {
  current?.kill('was stopped');
}

/**
 * A description of one of our files held open by the helper. It is `live`
 * while that helper runs; once it died, the locks are gone and a new
 * description must be opened.
 */
export class LockDescription {
  private closed = false;

  private constructor(
    private readonly proc: HelperProcess,
    private readonly id: number,
  ) {}

  /**
   * Opens a description of the file our descriptor `fd` refers to. Rejects
   * with EBADF as fcntl would (a BlockError carrying the errno) when `fd`
   * is not open; with helperError when perl cannot answer.
   */
  static async open(fd: number): Promise<LockDescription | { errno: number; message: string }> {
    const proc = helper();
    const id = proc.newId();
    const answer = parseOutcome(await proc.ask(`o ${id} /proc/${process.pid}/fd/${fd}`));
    if (!answer) throw helperError('answered an open with something else');
    if (answer.errno === 0) return new LockDescription(proc, id);
    // No such entry under /proc/PID/fd: the descriptor is not open.
    return answer.errno === ENOENT ? { errno: EBADF, message: 'Bad file descriptor' } : answer;
  }

  get live(): boolean {
    return !this.closed && this.proc.dead === undefined;
  }

  /** Runs `steps` up to the first failure, then (only after one) `undo`. */
  async run(steps: readonly LockStep[], undo: readonly LockStep[]): Promise<LockReply> {
    requests++;
    const line = await this.proc.ask(encode(this.id, steps, undo));
    const reply = decode(steps, undo, line);
    if (!reply) {
      this.proc.kill(`answered ${JSON.stringify(line)} to ${JSON.stringify(encode(this.id, steps, undo))}`);
      throw this.proc.dead!;
    }
    return reply;
  }

  /**
   * lseek(SEEK_DATA) from `offset`, then SEEK_HOLE from there, on this
   * description (its own file position): where the next data starts and
   * the hole after it, or the errno (ENXIO: only a hole up to the end).
   */
  async seekData(offset: number): Promise<{ data: number; hole: number } | { errno: number; message: string }> {
    const line = await this.proc.ask(`h ${this.id} ${offset}`);
    const m = /^0 (\d+) (\d+)$/.exec(line);
    if (m) return { data: Number(m[1]), hole: Number(m[2]) };
    const failed = parseOutcome(line);
    if (!failed || failed.errno === 0) {
      this.proc.kill(`answered ${JSON.stringify(line)} to a seek`);
      throw this.proc.dead!;
    }
    return failed;
  }

  /** Closes the description, and its locks go. Never fails: a dead helper took them already. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.proc.dead) return;
    await this.proc.ask(`c ${this.id}`).catch(() => undefined);
  }
}

const CODE = { lock: 'l', unlock: 'u', test: 't' } as const;

function encode(id: number, steps: readonly LockStep[], undo: readonly LockStep[]): string {
  const s = steps.map((x) => CODE[x.kind] + x.byte);
  const u = undo.length > 0 ? ['|', ...undo.map((x) => CODE[x.kind] + x.byte)] : [];
  return ['r', String(id), ...s, ...u].join(' ');
}

function parseOutcome(field: string): { errno: number; message: string } | undefined {
  const m = /^(\d+)(?: (.*))?$/.exec(field);
  return m ? { errno: Number(m[1]), message: m[2] ?? '' } : undefined;
}

/** Parses one reply line; undefined when it does not fit the request (perl misbehaved). */
function decode(reqSteps: readonly LockStep[], reqUndo: readonly LockStep[], line: string): LockReply | undefined {
  const outcomes: { errno: number; message: string }[] = [];
  for (const f of line === '' ? [] : line.split('\t')) {
    const o = parseOutcome(f);
    if (!o) return undefined;
    outcomes.push(o);
  }
  const steps: StepOutcome[] = [];
  let i = 0;
  for (const step of reqSteps) {
    const o = outcomes[i++];
    if (!o) return undefined;
    steps.push({ step, ...o });
    if (o.errno !== 0) break;
  }
  const undo: StepOutcome[] = [];
  if (steps.some((s) => s.errno !== 0)) {
    for (const step of reqUndo) {
      const o = outcomes[i++];
      if (!o) return undefined;
      undo.push({ step, ...o });
    }
  }
  return i === outcomes.length ? { steps, undo } : undefined;
}
