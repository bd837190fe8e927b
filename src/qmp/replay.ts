import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { connSocket, type RecordLine, type Recording } from './record-file.js';
import { compareStreams, eventStreams, isEvent, type Message, type NormaliseOptions, normaliseMessage, stableJson, transientPauses } from './replay-compare.js';

export interface ReplayOptions {
  /** The socket to play a recorded monitor's connections on. */
  socketFor(recordedSocket: string): string;
  /** Applied to every input the recording holds before it is sent (the recording's directory → the replay's). */
  rewriteInput(text: Buffer): Buffer;
  normalise: NormaliseOptions;
  /** How long to wait for each reply or event the recording says came. */
  timeoutMs: number;
  /**
   * Keep the recording's pace: each connection and input starts no earlier
   * than it did in the recording (counted from the start), for clients
   * that let time pass (a sleep, not a wait for an event) between commands.
   */
  pace?: boolean;
}

export interface ReplayResult {
  /** Replies and event streams compared. */
  compared: number;
  differences: string[];
}

/** One replayed connection: what the daemon has sent, replies and events apart. */
class Conn {
  private buf = '';
  readonly replies: Message[] = [];
  readonly events: Message[] = [];
  /** Events the recording holds for this connection, normalised. */
  readonly recordedEvents: Message[] = [];
  ended = false;
  /** The last input sent, to say what a reply that differs answered. */
  lastInput = '(none)';
  /** Replies no longer line up (one never came): the rest of this connection is not compared. */
  broken = false;
  private wake: (() => void) | undefined;

  constructor(
    readonly name: string,
    readonly socket: Socket,
    private readonly norm: NormaliseOptions,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }

  private onData(d: string): void {
    this.buf += d;
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line === '') continue;
      let m: Message;
      try {
        m = JSON.parse(line) as Message;
      } catch {
        m = { '(not JSON)': line };
      }
      if (isEvent(m)) this.events.push(normaliseMessage(m, this.norm));
      else this.replies.push(normaliseMessage(m, this.norm));
    }
    this.wake?.();
  }

  /** Resolves when `ready()` holds, or false after `ms` (or once the daemon hung up and it still does not). */
  async until(ready: () => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!ready()) {
      if (this.ended || Date.now() >= deadline) return ready();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(100, deadline - Date.now()));
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return true;
  }
}

function connectTo(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * Plays a recording's client side against a daemon and compares what comes
 * back. Each connection runs as recorded: its input is sent once the
 * replies and events recorded before it have come (so a client that waited
 * for an event before its next command waits here too); replies are
 * compared in order, events per stream when the connection closes.
 */
export async function replay(rec: Recording, o: ReplayOptions): Promise<ReplayResult> {
  const conns = new Map<string, Conn>();
  const result: ReplayResult = { compared: 0, differences: [] };
  const differ = (c: string, what: string) => result.differences.push(`${c}: ${what}`);
  // Which recorded events are drain pauses, per connection: they are not waited for.
  const transient = new Set<number>();
  const byConn = new Map<string, Array<{ index: number; msg: Message }>>();
  rec.lines.forEach((l, index) => {
    if (l.dir === 'out' && isEvent(l.msg)) {
      let list = byConn.get(l.conn);
      if (!list) byConn.set(l.conn, (list = []));
      list.push({ index, msg: l.msg });
    }
  });
  for (const list of byConn.values()) for (const i of transientPauses(list.map((e) => e.msg))) transient.add(list[i]!.index);
  // A connection is hung up right after its last message: the daemon notices a hang-up late, so the
  // recording can show it after the next connection's start, and qemu-storage-daemon greets a second
  // client only once the first has gone.
  const lastMessage = new Map<string, number>();
  rec.lines.forEach((l, index) => {
    if (l.dir === 'in' || l.dir === 'out') lastMessage.set(l.conn, index);
  });
  const hangUp = (c: Conn) => {
    finish(c);
    c.socket.destroy();
    conns.delete(c.name);
  };

  const finish = (c: Conn) => {
    if (c.broken) return;
    result.compared++;
    for (const d of compareStreams(eventStreams(c.recordedEvents), eventStreams(c.events))) differ(c.name, d);
    for (const r of c.replies) differ(c.name, `a reply the recording does not have: ${stableJson(r)}`);
  };

  const start = performance.now();
  for (const [index, line] of rec.lines.entries()) {
    if (o.pace && (line.dir === 'open' || line.dir === 'in')) {
      const wait = start + line.t * 1000 - performance.now();
      if (wait > 0) await sleep(wait);
    }
    const c = conns.get(line.conn);
    if (c && line.dir !== 'open') {
      await play(c, line, index);
      if (index === lastMessage.get(line.conn) && conns.has(line.conn)) hangUp(c);
      continue;
    }
    if (line.dir === 'open') {
      try {
        conns.set(line.conn, new Conn(line.conn, await connectTo(o.socketFor(connSocket(line.conn))), o.normalise));
      } catch (err) {
        throw new Error(`cannot connect to ${o.socketFor(connSocket(line.conn))}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
  }
  for (const c of conns.values()) {
    finish(c);
    c.socket.destroy();
  }
  return result;

  async function play(c: Conn, line: RecordLine, index: number): Promise<void> {
    if (c.broken) return;
    if (line.dir === 'in') {
      const bytes = o.rewriteInput(line.bytes);
      c.lastInput = bytes.toString('utf8').trim();
      if (!c.socket.destroyed) c.socket.write(bytes);
    } else if (line.dir === 'close') {
      hangUp(c);
    } else if (line.dir === 'out' && isEvent(line.msg)) {
      const want = normaliseMessage(line.msg, o.normalise);
      c.recordedEvents.push(want);
      if (transient.has(index)) return;
      const key = stableJson(want);
      const count = (list: Message[]) => list.reduce((n, e) => n + (stableJson(e) === key ? 1 : 0), 0);
      const needed = count(c.recordedEvents);
      // A missing event shows in the stream comparison when the connection ends.
      await c.until(() => count(c.events) >= needed, o.timeoutMs);
    } else if (line.dir === 'out') {
      const want = normaliseMessage(line.msg, o.normalise);
      if (!(await c.until(() => c.replies.length > 0, o.timeoutMs))) {
        differ(c.name, `no reply within ${o.timeoutMs} ms to ${c.lastInput}; recorded:\n  ${stableJson(want)}\n  (the rest of this connection is not compared)`);
        c.broken = true;
        c.socket.destroy();
        return;
      }
      const got = c.replies.shift()!;
      result.compared++;
      if (stableJson(got) !== stableJson(want)) differ(c.name, `reply to ${c.lastInput} differs:\n  recorded: ${stableJson(want)}\n  replayed: ${stableJson(got)}`);
    }
  }
}
