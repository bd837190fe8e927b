import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { Daemon, VERSION } from '../daemon.js';
import { logger, setLogLevel } from '../log.js';
import { makeQmpParser } from '../qmp/parser.js';
import { ArgsError, HELP, parseDaemonArgs } from './daemon-args.js';
import { OptionError, planDaemon, replayArgv } from './daemon.js';
import { DAEMON_PROG as PROG } from './tool-names.js';
/** Set in the environment of the child a --daemonize parent starts. */
const DAEMON_CHILD = 'BLOCKEMU_DAEMON_CHILD';

/**
 * `blockemu daemon`: qemu-storage-daemon's command line, then the daemon
 * until `quit`, SIGINT or SIGTERM; resolves to the exit code.
 */
export async function runDaemon(args: string[]): Promise<number> {
  let plan;
  let options;
  try {
    options = parseDaemonArgs(args);
    plan = planDaemon(options);
  } catch (err) {
    if (err instanceof ArgsError || err instanceof OptionError) {
      process.stderr.write(`${PROG}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  if (plan.logLevel !== undefined) setLogLevel(plan.logLevel);
  if (plan.help) {
    process.stdout.write(HELP.replaceAll('qemu-storage-daemon', PROG));
    return 0;
  }
  if (plan.version) {
    const v = VERSION.qemu;
    process.stdout.write(`${PROG} version ${v.major}.${v.minor}.${v.micro} (${VERSION.package})\n`);
    return 0;
  }
  if (plan.daemonize && process.env[DAEMON_CHILD] === undefined) return daemonize();

  // Signals are handled from the start: one that arrives while images open or sockets bind shuts down right after.
  let daemon: Daemon | undefined;
  let stopRequested: string | undefined;
  const stop = (signal: string) => {
    if (daemon) void daemon.shutdown(signal);
    else stopRequested = signal;
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const record = plan.record === undefined ? undefined : { path: plan.record, header: { argv: replayArgv(options), cwd: process.cwd(), program: VERSION.package } };
    daemon = await Daemon.start({ ...plan.config, makeParser: makeQmpParser, progName: PROG, record, printf: (text) => void process.stdout.write(text) });
  } catch (err) {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    process.stderr.write(`${PROG}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.send?.({ failed: true });
    return 1;
  }
  if (stopRequested) void daemon.shutdown(stopRequested);
  // A daemonized child tells its parent that startup is complete.
  if (process.send) {
    process.send({ ready: true });
    process.disconnect();
    detachStderr();
  }
  // A daemon with nothing listening (only --blockdev or --pidfile) has no handle to keep Node's loop
  // alive, yet runs until a signal or quit, as qemu-storage-daemon's main loop does.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await daemon.whenExited();
  clearInterval(keepAlive);
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  logger().info('daemon exited');
  return 0;
}

/**
 * os_setup_post: once started, a daemonized child's stderr (inherited from
 * whoever started the parent) becomes /dev/null, so a caller reading the
 * parent's output to its end is not held open by the daemon. The lowest
 * free descriptor is the one just closed, so /dev/null takes its place.
 */
function detachStderr(): void {
  closeSync(2);
  openSync('/dev/null', 'w');
}

/**
 * --daemonize: the same command runs detached in a new session; this
 * process exits once the child reports that startup is complete (0) or
 * failed (1, its error having gone to our inherited stderr), as QEMU's
 * parent does.
 */
function daemonize(): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, process.argv.slice(1), {
      detached: true,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { ...process.env, [DAEMON_CHILD]: '1' },
    });
    child.once('message', (m: { ready?: boolean }) => {
      child.unref();
      child.disconnect();
      resolve(m.ready ? 0 : 1);
    });
    child.once('exit', (code) => resolve(code === 0 ? 1 : (code ?? 1)));
  });
}
