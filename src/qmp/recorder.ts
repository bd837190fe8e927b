import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';

/**
 * A QMP traffic log (`blockemu daemon --record FILE`): JSON lines, the
 * first a header saying how the daemon was started, then one line per
 * exchange on any monitor as it happens:
 *
 *   {"blockemu-qmp-record":1,"argv":[…],"cwd":"/dir","program":"blockemu 0.1.0","t":…}
 *   {"t":1764969300.123456,"conn":"/dir/qmp.sock#1","dir":"open"}
 *   {"t":…,"conn":"/dir/qmp.sock#1","dir":"out","msg":{"QMP":{…}}}
 *   {"t":…,"conn":"/dir/qmp.sock#1","dir":"in","text":"{\"execute\":\"qmp_capabilities\"}\n"}
 *   {"t":…,"conn":"/dir/qmp.sock#1","dir":"close"}
 *
 * Input is logged as the bytes arrived (`text`, or `base64` when they are
 * not UTF-8), so a replay sends exactly what the client sent, malformed
 * input included; output is the message as written (the daemon's own JSON,
 * big integers digit for digit). Lines are appended through a stream (no
 * synchronous I/O on the daemon's path) and flushed by close().
 */
export const RECORD_FORMAT = 'blockemu-qmp-record';

export interface RecordHeader {
  /** The daemon's command line without --record: what a replay starts. */
  argv: string[];
  /** The daemon's working directory: relative paths in argv are relative to it. */
  cwd: string;
  program: string;
}

export class QmpRecorder {
  private failed: Error | undefined;

  private constructor(private readonly out: WriteStream) {
    // A full disk must not take the daemon down: recording stops, and close() reports it.
    out.on('error', (err) => (this.failed ??= err));
  }

  static async open(path: string, header: RecordHeader): Promise<QmpRecorder> {
    const out = createWriteStream(path, { flags: 'w', mode: 0o600 });
    await once(out, 'open').catch((err: Error) => {
      throw new Error(`cannot write the QMP record: ${err.message}`, { cause: err });
    });
    const r = new QmpRecorder(out);
    r.line(`{"${RECORD_FORMAT}":1,"argv":${JSON.stringify(header.argv)},"cwd":${JSON.stringify(header.cwd)},"program":${JSON.stringify(header.program)},"t":${now()}}`);
    return r;
  }

  opened(conn: string): void {
    this.event(conn, 'open');
  }

  closed(conn: string): void {
    this.event(conn, 'close');
  }

  input(conn: string, chunk: Uint8Array): void {
    const text = new TextDecoder('utf-8', { fatal: false }).decode(chunk);
    const exact = Buffer.from(text, 'utf8').equals(chunk);
    const payload = exact ? `"text":${JSON.stringify(text)}` : `"base64":"${Buffer.from(chunk).toString('base64')}"`;
    this.line(`{"t":${now()},"conn":${JSON.stringify(conn)},"dir":"in",${payload}}`);
  }

  /** A message as the session wrote it (one JSON text, without the line end). */
  output(conn: string, json: string): void {
    this.line(`{"t":${now()},"conn":${JSON.stringify(conn)},"dir":"out","msg":${json}}`);
  }

  private event(conn: string, dir: 'open' | 'close'): void {
    this.line(`{"t":${now()},"conn":${JSON.stringify(conn)},"dir":"${dir}"}`);
  }

  private line(s: string): void {
    if (!this.failed && !this.out.destroyed) this.out.write(`${s}\n`);
  }

  /** Flushes and closes the file; rejects with the first write error, if any. */
  async close(): Promise<void> {
    if (!this.out.closed) {
      this.out.end();
      await once(this.out, 'close').catch(() => undefined);
    }
    if (this.failed) throw this.failed;
  }
}

/** Wall-clock seconds with microseconds, as QMP event timestamps count them. */
function now(): string {
  const us = Math.round((performance.timeOrigin + performance.now()) * 1000);
  return `${Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, '0')}`;
}
