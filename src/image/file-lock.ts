import { open } from 'node:fs/promises';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { BlockError } from './errors.js';
import { EAGAIN, LockDescription, type LockReply, type LockStep, type StepOutcome } from './lock-helper.js';
import { waitForOrphanedHelpers } from './orphaned-lock-helpers.js';
import { PERM_ALL, PERM_BITS, permNames } from './perm.js';

/**
 * QEMU's image locks (block/file-posix.c): a file node publishes its
 * permissions to other processes as OFD read locks on byte 100 + i for each
 * permission bit i it holds and on byte 200 + i for each bit it does not
 * share; a would-be user tests for other descriptions' locks on the opposite
 * bytes. Processes running QEMU and blockemu thereby refuse each other exactly
 * as two QEMUs do.
 */

const EACCES = constants.errno.EACCES;
const PERM_BASE = 100; // RAW_LOCK_PERM_BASE
const SHARED_BASE = 200; // RAW_LOCK_SHARED_BASE

/**
 * The eight lock bytes as one mask: bit i (i < 4) is byte 100 + i, bit 4 + i
 * is byte 200 + i. Ascending bits are QEMU's order (perm bytes, then shared).
 */
type ByteMask = number;

const byteOf = (bit: number): number => (bit < PERM_BITS ? PERM_BASE + bit : SHARED_BASE + bit - PERM_BITS);
const maskOf = (byte: number): ByteMask => 1 << (byte >= SHARED_BASE ? byte - SHARED_BASE + PERM_BITS : byte - PERM_BASE);
const wanted = (perm: number, unshared: number): ByteMask => (perm & PERM_ALL) | ((unshared & PERM_ALL) << PERM_BITS);

/** A lock failure as QEMU words it, with QEMU's error hint apart (the CLI tools print it on the next line; QMP leaves it out). */
export class ImageLockError extends BlockError {
  constructor(message: string, errno: number, hint: string | undefined) {
    // EAGAIN and EACCES are what another holder causes: a conflict. Anything else is the host failing.
    const conflict = errno === EAGAIN || errno === EACCES;
    super(conflict ? 'LOCKED' : 'IO', message, { errno: conflict ? undefined : errnoName(errno), hint });
    this.name = 'ImageLockError';
  }
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return 'EIO';
  }
}

/** raw_lock_error_setg_errno: no errno text for EAGAIN and EACCES (someone else holds the byte), else ": strerror". */
function withErrno(text: string, o: StepOutcome, elide = true): string {
  return elide && (o.errno === EAGAIN || o.errno === EACCES) ? text : `${text}: ${o.message}`;
}

/** The error for a failed step, in raw_apply_lock_bytes' and raw_check_lock_bytes' words. */
function stepError(o: StepOutcome, path: string): ImageLockError {
  const { kind, byte } = o.step;
  if (kind === 'lock') return new ImageLockError(withErrno(`Failed to lock byte ${byte}`, o), o.errno, undefined);
  if (kind === 'unlock') return new ImageLockError(withErrno(`Failed to unlock byte ${byte}`, o, false), o.errno, undefined);
  const shared = byte < SHARED_BASE;
  const name = permNames(1 << (byte - (shared ? PERM_BASE : SHARED_BASE)));
  const text = shared ? `Failed to get shared "${name}" lock` : `Failed to get "${name}" lock`;
  return new ImageLockError(withErrno(text, o), o.errno, `Is another process using the image [${path}]?`);
}

/**
 * Lock and unlock steps from `held` to `target` (raw_apply_lock_bytes):
 * missing target bytes are locked; with `unlock`, held bytes outside the
 * target are unlocked. A byte whose state is `unknown` is acted on either way.
 */
function applySteps(held: ByteMask, unknown: ByteMask, target: ByteMask, unlock: boolean): LockStep[] {
  const steps: LockStep[] = [];
  for (let bit = 0; bit < 2 * PERM_BITS; bit++) {
    const m = 1 << bit;
    if (target & m) {
      if (!(held & m) || unknown & m) steps.push({ kind: 'lock', byte: byteOf(bit) });
    } else if (unlock && (held & m || unknown & m)) steps.push({ kind: 'unlock', byte: byteOf(bit) });
  }
  return steps;
}

/** Tests for a new user's perm and shared (raw_check_lock_bytes): bytes 200 + i for each perm bit, then 100 + i for each unshared bit. */
function checkSteps(perm: number, shared: number): LockStep[] {
  const steps: LockStep[] = [];
  for (let i = 0; i < PERM_BITS; i++) if (perm & (1 << i)) steps.push({ kind: 'test', byte: SHARED_BASE + i });
  for (let i = 0; i < PERM_BITS; i++) if (!(shared & (1 << i))) steps.push({ kind: 'test', byte: PERM_BASE + i });
  return steps;
}

/**
 * The locks of one open file description, as file-posix keeps them for its
 * node (raw_handle_perm_lock). `prepare` takes what a permission change
 * needs and checks it against other holders, `commit` settles on the new
 * set, `abort` returns to the committed one. Perl runs only when a byte must
 * change or be tested.
 *
 * The locks are held on a description of the file that the lock helper
 * opens through our descriptor (lock-helper.ts), so the descriptor must be
 * open at the first operation that changes or tests a byte; `release` lets
 * the locks go (closing the descriptor no longer takes them along).
 * Operations on one ImageLock run one after another in call order. Each
 * ImageLock has its own description, so two on one file conflict as two
 * file-posix nodes do.
 */
export class ImageLock {
  /** Committed permissions (s->perm, s->shared_perm); a node starts using nothing and sharing all. */
  private perm = 0;
  private shared = PERM_ALL;
  /** Bytes locked on the descriptor (s->locked_perm, s->locked_shared_perm). */
  private held: ByteMask = 0;
  /** Bytes a failed helper run may or may not have changed: the next operation sets or clears them whatever `held` says. */
  private unknown: ByteMask = 0;
  private closed = false;
  private description: LockDescription | undefined;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  /** The committed permissions. */
  get committed(): { perm: number; shared: number } {
    return { perm: this.perm, shared: this.shared };
  }

  /**
   * Takes the bytes `perm` and `shared` need on top of the committed ones and
   * checks that no other description's locks forbid them. On a conflict the
   * bytes go back to the committed state and an ImageLockError says which
   * permission, in QEMU's words. Nothing runs when the change only gives up
   * permissions.
   */
  prepare(perm: number, shared: number): Promise<void> {
    return this.serial(() => this.doPrepare(perm, shared));
  }

  private async doPrepare(perm: number, shared: number, retried = false): Promise<void> {
    if ((this.perm | perm) === this.perm && (this.shared & shared) === this.shared) return;
    this.dropIfGone();
    const target = wanted(this.perm | perm, ~this.shared | ~shared);
    const locks = applySteps(this.held, this.unknown, target, false);
    // Undo (QEMU's fall-through to ABORT) from the state the locks would leave; unlocking a byte never locked is harmless.
    const after = locks.reduce((h, s) => h | maskOf(s.byte), this.held);
    const undo = applySteps(after, this.unknown, wanted(this.perm, ~this.shared), true);
    const reply = await this.send([...locks, ...checkSteps(perm, shared)], undo);
    const failed = reply.steps.find((o) => o.errno !== 0);
    if (!failed) return;
    // The holder may be a killed blockemu's lock helper, not dead yet: once it is, the answer is the one QEMU would get.
    if (!retried && failed.step.kind === 'test' && failed.errno === EAGAIN && (await waitForOrphanedHelpers())) return this.doPrepare(perm, shared, true);
    throw stepError(failed, this.path);
  }

  /**
   * Settles on exactly `perm` and `shared`, which become the committed state.
   * Like QEMU's commit it cannot fail: a byte that failed to change comes
   * back as the error QEMU prints as a warning (warn_report_err).
   */
  commit(perm: number, shared: number): Promise<BlockError | undefined> {
    return this.serial(() => this.doCommit(perm, shared));
  }

  private doCommit(perm: number, shared: number): Promise<BlockError | undefined> {
    this.perm = perm & PERM_ALL;
    this.shared = shared & PERM_ALL;
    return this.settle();
  }

  /**
   * prepare, then commit once it holds, as one operation (nothing else on
   * this lock runs between them, and `settled` covers both): what a user
   * that opens a file for one set of permissions and keeps it needs. After
   * a successful prepare the commit changes no byte, so it costs no run.
   */
  acquire(perm: number, shared: number): Promise<BlockError | undefined> {
    return this.serial(async () => {
      await this.doPrepare(perm, shared);
      return this.doCommit(perm, shared);
    });
  }

  /** Back to the committed state after a prepare; a warning as for commit. */
  abort(): Promise<BlockError | undefined> {
    return this.serial(() => this.settle());
  }

  /** Resolves once every operation asked for so far has settled (the descriptor may be closed then). */
  settled(): Promise<void> {
    return this.tail.then(() => undefined);
  }

  /**
   * Lets every lock go, once the operations asked for so far have settled;
   * the ImageLock refuses to work after. Never fails.
   */
  release(): Promise<void> {
    const run = this.tail.then(async () => {
      this.closed = true;
      this.held = 0;
      this.unknown = 0;
      await this.description?.close();
      this.description = undefined;
    });
    this.tail = run;
    return run;
  }

  /** A helper that died took its descriptions' locks with it: nothing is held any more. */
  private dropIfGone(): void {
    if (this.description && !this.description.live) {
      this.description = undefined;
      this.held = 0;
      this.unknown = 0;
    }
  }

  private async settle(): Promise<BlockError | undefined> {
    this.dropIfGone();
    const steps = applySteps(this.held, this.unknown, wanted(this.perm, ~this.shared), true);
    if (steps.length === 0) return undefined;
    try {
      const reply = await this.send(steps, []);
      const failed = reply.steps.find((o) => o.errno !== 0);
      return failed ? stepError(failed, this.path) : undefined;
    } catch (err) {
      return err as BlockError;
    }
  }

  /** Runs steps and records what they changed; a request perl did not answer leaves its bytes unknown. */
  private async send(steps: LockStep[], undo: LockStep[]): Promise<LockReply> {
    let reply: LockReply;
    try {
      if (!this.description) {
        const d = await LockDescription.open(this.fd);
        // The descriptor is not open: the first step fails as fcntl would have failed on it.
        if (!(d instanceof LockDescription)) return { steps: steps.slice(0, 1).map((step) => ({ step, ...d })), undo: [] };
        this.description = d;
      }
      reply = await this.description.run(steps, undo);
    } catch (err) {
      for (const s of [...steps, ...undo]) if (s.kind !== 'test') this.unknown |= maskOf(s.byte);
      throw err;
    }
    for (const o of [...reply.steps, ...reply.undo]) {
      if (o.errno !== 0 || o.step.kind === 'test') continue;
      const m = maskOf(o.step.byte);
      this.held = o.step.kind === 'lock' ? this.held | m : this.held & ~m;
      this.unknown &= ~m;
    }
    return reply;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      if (this.closed) throw new BlockError('CLOSED', `The image lock of '${this.path}' is gone: it was released`);
      return fn();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** Why OFD locks cannot be taken here, or undefined when they can. */
type Probe = { ok: true } | { ok: false; reason: string };
let probe: Promise<Probe> | undefined;

/**
 * Whether this process can take OFD locks, found once (as
 * qemu_probe_lock_ops does): Linux, a struct flock layout we know, perl runs,
 * and F_OFD_GETLK on /dev/null succeeds.
 */
export async function ofdLocksAvailable(): Promise<boolean> {
  return (await probeOfdLocks()).ok;
}

function probeOfdLocks(): Promise<Probe> {
  probe ??= (async (): Promise<Probe> => {
    if (process.platform !== 'linux') return { ok: false, reason: `OFD locks are Linux's and this is ${process.platform}` };
    if (process.arch !== 'x64' && process.arch !== 'arm64') {
      return { ok: false, reason: `it knows Linux's struct flock only on x86_64 and aarch64, not on ${process.arch}` };
    }
    let fh;
    try {
      fh = await open('/dev/null', 'r+');
    } catch (err) {
      return { ok: false, reason: `/dev/null could not be opened for the probe (${(err as Error).message})` };
    }
    try {
      const d = await LockDescription.open(fh.fd);
      if (!(d instanceof LockDescription)) return { ok: false, reason: `perl could not open /dev/null through /proc/${process.pid}/fd (${d.message})` };
      const o = (await d.run([{ kind: 'test', byte: 0 }], [])).steps[0]!;
      await d.close();
      if (o.errno !== 0 && o.errno !== EAGAIN) return { ok: false, reason: `the kernel refused F_OFD_GETLK (${o.message})` };
      return { ok: true };
    } catch (err) {
      const cause = (err as BlockError).cause as Error | undefined;
      return { ok: false, reason: `it takes them through perl, which failed (${cause?.message ?? (err as Error).message})` };
    } finally {
      await fh.close();
    }
  })();
  return probe;
}

/**
 * The file driver's `locking` option (raw_open_common): whether to lock.
 * Where QEMU falls back to POSIX locks for `on` without OFD locks, blockemu
 * refuses, since it has no way to take those.
 */
export async function resolveLocking(mode: 'on' | 'off' | 'auto'): Promise<boolean> {
  if (mode === 'off') return false;
  const p = await probeOfdLocks();
  if (p.ok) return true;
  if (mode === 'auto') return false;
  throw new BlockError('UNSUPPORTED', `File lock requested (locking=on) but blockemu cannot take OFD locks here: ${p.reason}; use locking=auto or locking=off`);
}
