/**
 * What a replay compares, and what it lets vary (the README's "Record and
 * replay" lists the same rules for users):
 *
 * - event timestamps are dropped;
 * - the recording's directory and the replay's are both `${DIR}` in every
 *   string, generated node names (`#block123`) are `#block`;
 * - the `package` and the `micro` version of the greeting and of
 *   query-version (which daemon, which stable release answered) are dropped;
 * - BLOCK_JOB_CANCELLED's `offset` is dropped: how far a job got before a
 *   cancel is timing;
 * - keys the user names (`--ignore-key`) are dropped everywhere;
 * - events are compared per stream (a job's events by its id or device,
 *   others by name and node), in order within a stream but not across
 *   streams: QEMU promises no order between two jobs' events; a
 *   JOB_STATUS_CHANGE to `paused` directly followed by one to `running`
 *   in the same stream (a drain) is dropped on both sides.
 */

export interface NormaliseOptions {
  /** Directories that become `${DIR}` (the recording's and the replay's). */
  dirs: readonly string[];
  ignoreKeys: ReadonlySet<string>;
}

export type Message = Record<string, unknown>;

export function isEvent(m: Message): boolean {
  return typeof m['event'] === 'string';
}

/** A message as it is compared. */
export function normaliseMessage(m: Message, o: NormaliseOptions): Message {
  const dirs = [...new Set(o.dirs.filter((d) => d !== '' && d !== '/'))].sort((a, b) => b.length - a.length);
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      let s = v;
      for (const d of dirs) s = s.replaceAll(d, '${DIR}');
      return s.replace(/#block\d+/g, '#block');
    }
    if (Array.isArray(v)) return v.map(walk);
    if (typeof v === 'object' && v !== null) {
      const out: Message = {};
      for (const [k, x] of Object.entries(v)) if (!o.ignoreKeys.has(k)) out[k] = walk(x);
      return out;
    }
    return v;
  };
  const n = walk(m) as Message;
  if (isEvent(n)) {
    delete n['timestamp'];
    const data = n['data'] as Message | undefined;
    if (n['event'] === 'BLOCK_JOB_CANCELLED' && data) delete data['offset'];
  }
  const greeting = n['QMP'] as { version?: Message } | undefined;
  if (greeting?.version) dropRelease(greeting.version);
  const ret = n['return'] as Message | undefined;
  if (ret && typeof ret === 'object' && !Array.isArray(ret) && 'qemu' in ret && 'package' in ret) dropRelease(ret);
  return n;
}

function dropRelease(version: Message): void {
  delete version['package'];
  const qemu = version['qemu'] as Message | undefined;
  if (qemu && typeof qemu === 'object') delete qemu['micro'];
}

/** The stream an event belongs to: a job's events by its id (or device), others by name and what they name. */
export function streamKey(e: Message): string {
  const name = String(e['event']);
  const d = (e['data'] ?? {}) as Message;
  if (name === 'JOB_STATUS_CHANGE' || name === 'BLOCK_JOB_PENDING') return `job ${String(d['id'])}`;
  if (name.startsWith('BLOCK_JOB_')) return `job ${String(d['device'])}`;
  return `${name} ${String(d['id'] ?? d['node-name'] ?? d['device'] ?? '')}`;
}

const status = (e: Message): unknown => (e['event'] === 'JOB_STATUS_CHANGE' ? (e['data'] as Message | undefined)?.['status'] : undefined);

/** Indexes (into `events`) of drain pauses: a `paused` directly followed, in its stream, by `running`, and that `running`. */
export function transientPauses(events: readonly Message[]): Set<number> {
  const last = new Map<string, number>();
  const out = new Set<number>();
  events.forEach((e, i) => {
    const key = streamKey(e);
    const prev = last.get(key);
    if (prev !== undefined && !out.has(prev) && status(events[prev]!) === 'paused' && status(e) === 'running') {
      out.add(prev);
      out.add(i);
    }
    last.set(key, i);
  });
  return out;
}

/** Events grouped by stream, drain pauses left out. */
export function eventStreams(events: readonly Message[]): Map<string, string[]> {
  const skip = transientPauses(events);
  const streams = new Map<string, string[]>();
  events.forEach((e, i) => {
    if (skip.has(i)) return;
    const key = streamKey(e);
    let s = streams.get(key);
    if (!s) streams.set(key, (s = []));
    s.push(stableJson(e));
  });
  return streams;
}

/** JSON with object keys sorted: two messages are equal when these are. */
export function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    typeof x === 'object' && x !== null && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

/** Differences between two sets of event streams, one line each (the stream, then both sequences). */
export function compareStreams(recorded: Map<string, string[]>, replayed: Map<string, string[]>): string[] {
  const out: string[] = [];
  for (const key of new Set([...recorded.keys(), ...replayed.keys()])) {
    const a = recorded.get(key) ?? [];
    const b = replayed.get(key) ?? [];
    if (a.length === b.length && a.every((x, i) => x === b[i])) continue;
    const i = a.findIndex((x, j) => x !== b[j]);
    const at = i < 0 ? a.length : i;
    out.push(`events of ${key} differ at #${at + 1}:\n  recorded: ${a[at] ?? '(none)'}\n  replayed: ${b[at] ?? '(none)'}`);
  }
  return out;
}
