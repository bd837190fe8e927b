import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connSocket, readRecording, type Recording, RecordingError } from '../qmp/record-file.js';
import { replay } from '../qmp/replay.js';

export interface ReplayCliOptions {
  /** A running daemon's monitor socket: every recorded connection is played on it. */
  against?: string;
  /** Start qemu-storage-daemon (or, with 'blockemu', this program's daemon) with the recording's command line. */
  start?: 'qsd' | 'blockemu';
  /** The directory that stands for the recording's working directory (paths under it are rewritten). */
  dir?: string;
  timeoutMs: number;
  ignoreKeys: string[];
  /** Keep the recording's pace (replay.ts). */
  pace?: boolean;
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

/** Options of blockemu's daemon that qemu-storage-daemon does not know; left out when it replays. */
const BLOCKEMU_ONLY = new Set(['--clock', '--log-level']);

/**
 * `blockemu replay FILE`: plays a --record file's client side against a
 * daemon and prints what came back differently. Exit 0 when nothing did,
 * 1 when something did, 2 when the replay could not run.
 */
export async function replayMain(io: Io, file: string, o: ReplayCliOptions): Promise<number> {
  if ((o.against === undefined) === (o.start === undefined)) {
    io.err('blockemu replay: give one of --against SOCKET, --qsd, --blockemu\n');
    return 2;
  }
  let rec: Recording;
  try {
    rec = await readRecording(file);
  } catch (err) {
    if (!(err instanceof RecordingError)) throw err;
    io.err(`blockemu replay: ${err.message}\n`);
    return 2;
  }
  const recordedDir = rec.header.cwd;
  const dir = o.dir === undefined ? recordedDir : resolve(o.dir);
  const moveDir = (s: string) => (dir === recordedDir ? s : s.replaceAll(recordedDir, dir));
  const sockDir = o.start ? await mkdtemp(join(tmpdir(), 'blockemu-replay-')) : undefined;
  let daemon: Started | undefined;
  try {
    let socketFor: (recorded: string) => string;
    if (o.against !== undefined) {
      const path = resolve(o.against);
      socketFor = () => path;
    } else {
      const sockets = new Map<string, string>();
      const argv = rewriteMonitors(rec, sockDir!, sockets, moveDir, o.start === 'qsd');
      daemon = await startDaemon(o.start!, argv, dir, [...sockets.values()]);
      socketFor = (recorded) => sockets.get(recorded) ?? recorded;
    }
    const result = await replay(rec, {
      socketFor,
      rewriteInput: (b) => (dir === recordedDir ? b : Buffer.from(moveDir(b.toString('utf8')), 'utf8')),
      normalise: { dirs: [recordedDir, dir], ignoreKeys: new Set(o.ignoreKeys) },
      timeoutMs: o.timeoutMs,
      pace: o.pace,
    });
    for (const d of result.differences) io.out(`${d}\n`);
    io.out(`replay: ${result.compared} compared, ${result.differences.length} different\n`);
    return result.differences.length > 0 ? 1 : 0;
  } catch (err) {
    io.err(`blockemu replay: ${err instanceof Error ? err.message : String(err)}\n`);
    if (daemon?.stderr()) io.err(daemon.stderr());
    return 2;
  } finally {
    await daemon?.stop();
    if (sockDir) await rm(sockDir, { recursive: true, force: true });
  }
}

/**
 * The recording's command line with each monitor's socket moved into a
 * directory of the replay's own (the recording names sockets by the path
 * it had; `sockets` maps those paths to the new ones) and the recording's
 * directory rewritten.
 */
function rewriteMonitors(rec: Recording, sockDir: string, sockets: Map<string, string>, moveDir: (s: string) => string, forQsd: boolean): string[] {
  const out: string[] = [];
  const argv = rec.header.argv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (forQsd && BLOCKEMU_ONLY.has(a)) {
      i++;
      continue;
    }
    // The replay runs the daemon as its child, to stop it when done.
    if (a === '--daemonize') continue;
    if (a === '--chardev' && i + 1 < argv.length) {
      const value = argv[++i]!.replace(/(^|,)path=((?:[^,]|,,)*)/, (_m, lead: string, p: string) => {
        const fresh = join(sockDir, `monitor${sockets.size}.sock`);
        sockets.set(resolve(rec.header.cwd, p.replaceAll(',,', ',')), fresh);
        return `${lead}path=${fresh}`;
      });
      out.push(a, value);
      continue;
    }
    out.push(moveDir(a));
  }
  // Connections on monitors the command line does not show (an embedded daemon's recording) go nowhere known.
  for (const l of rec.lines) if (!sockets.has(connSocket(l.conn))) throw new Error(`the recording's command line has no monitor on ${connSocket(l.conn)}`);
  return out;
}

interface Started {
  stderr(): string;
  stop(): Promise<void>;
}

/** Starts the daemon and waits until every monitor socket accepts (or it exits, which is an error with its stderr). */
async function startDaemon(which: 'qsd' | 'blockemu', argv: string[], cwd: string, sockets: string[]): Promise<Started> {
  const proc: ChildProcess =
    which === 'qsd'
      ? spawn('qemu-storage-daemon', argv, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(process.execPath, [process.argv[1]!, 'daemon', ...argv], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let exited = false;
  const exit = new Promise<void>((r) => proc.once('close', () => ((exited = true), r())));
  proc.once('error', (err) => (stderr += `${err.message}\n`));
  const started: Started = {
    stderr: () => stderr,
    async stop() {
      if (!exited) proc.kill('SIGTERM');
      await exit;
    },
  };
  const name = which === 'qsd' ? 'qemu-storage-daemon' : 'blockemu daemon';
  for (const s of sockets) {
    for (let tries = 0; !(await accepts(s)); tries++) {
      if (exited || tries > 400) {
        await started.stop();
        throw new Error(`${name} ${exited ? 'exited' : 'did not open its monitor'} (${s})${stderr ? `:\n${stderr}` : ''}`);
      }
      await sleep(25);
    }
  }
  return started;
}

function accepts(path: string): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}
