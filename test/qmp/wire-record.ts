import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectToQsd } from '../helpers/qsd.js';
import { materialize, SENTINEL, type WireCase } from './wire-cases.js';

/** One reply line exactly as QEMU wrote it (without CRLF), and how many times in a row. */
export interface ReplyRun {
  line: string;
  times?: number;
}

export interface RecordedCase extends WireCase {
  replies: ReplyRun[];
}

export interface WireFixture {
  qemu: string;
  note: string;
  sentinel: string;
  cases: RecordedCase[];
}

/**
 * Sends each case's raw bytes, then SENTINEL, to a fresh negotiated monitor
 * of a real qemu-storage-daemon and collects the reply lines up to the
 * sentinel's reply. Lines are kept as text: QEMU prints infinite doubles as
 * `inf`, which is not JSON.
 */
export async function recordWireCases(cases: WireCase[]): Promise<{ version: string; cases: RecordedCase[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'blockemu-wire-'));
  const path = join(dir, 'qmp.sock');
  const proc: ChildProcess = spawn('qemu-storage-daemon', ['--chardev', `socket,id=m,path=${path},server=on,wait=off`, '--monitor', 'chardev=m'], { stdio: 'ignore' });
  let sock: Socket | undefined;
  try {
    const conn = await connectToQsd(path);
    sock = conn;
    const lines: string[] = [];
    let buf = Buffer.alloc(0);
    conn.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10)) {
        lines.push(buf.subarray(0, nl).toString('utf8').replace(/\r$/, ''));
        buf = buf.subarray(nl + 1);
      }
    });
    const until = async (done: () => boolean, what: string) => {
      for (const t = Date.now(); !done(); await sleep(5)) if (Date.now() - t > 900_000) throw new Error(`no ${what} from qemu-storage-daemon`);
    };
    await until(() => lines.length > 0, 'greeting');
    const greeting = JSON.parse(lines.shift()!) as { QMP: { version: { qemu: { major: number; minor: number; micro: number }; package: string } } };
    const v = greeting.QMP.version;
    conn.write('{"execute": "qmp_capabilities"}');
    await until(() => lines.length > 0, 'qmp_capabilities reply');
    lines.shift();
    const out: RecordedCase[] = [];
    for (const c of cases) {
      conn.write(materialize(c.input));
      conn.write(SENTINEL);
      await until(() => lines.some((l) => l.includes('"SENTINEL"')), `reply to case "${c.name}"`);
      out.push({ ...c, replies: runs(lines.splice(0)) });
    }
    return { version: `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro} (${v.package})`, cases: out };
  } finally {
    sock?.destroy();
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null ? r(undefined) : proc.once('exit', r)));
    await rm(dir, { recursive: true, force: true });
  }
}

function runs(lines: string[]): ReplyRun[] {
  const out: ReplyRun[] = [];
  for (const line of lines) {
    const last = out[out.length - 1];
    if (last?.line === line) last.times = (last.times ?? 1) + 1;
    else out.push({ line });
  }
  return out;
}

export function expandRuns(r: ReplyRun[]): string[] {
  return r.flatMap((x) => Array<string>(x.times ?? 1).fill(x.line));
}
