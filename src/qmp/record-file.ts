import { readFile } from 'node:fs/promises';
import { RECORD_FORMAT, type RecordHeader } from './recorder.js';

/** One line of a recording after the header (recorder.ts describes the format). */
/** `t`: seconds since the recording's first line. */
export type RecordLine =
  | { t: number; conn: string; dir: 'open' }
  | { t: number; conn: string; dir: 'close' }
  | { t: number; conn: string; dir: 'in'; bytes: Buffer }
  | { t: number; conn: string; dir: 'out'; msg: Record<string, unknown> };

export interface Recording {
  header: RecordHeader;
  lines: RecordLine[];
}

export class RecordingError extends Error {}

/** Reads a --record file; a line that is not a record is an error naming its line number. */
export async function readRecording(path: string): Promise<Recording> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new RecordingError(`cannot read ${path}: ${err.message}`);
  });
  const rows = text.split('\n');
  const parse = (i: number): Record<string, unknown> => {
    try {
      const v: unknown = JSON.parse(rows[i]!);
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // reported below
    }
    throw new RecordingError(`${path}:${i + 1}: not a JSON object`);
  };
  const head = parse(0);
  if (head[RECORD_FORMAT] !== 1 || !Array.isArray(head['argv']) || typeof head['cwd'] !== 'string') {
    throw new RecordingError(`${path}: not a blockemu QMP recording (the first line must be its header)`);
  }
  const header: RecordHeader = { argv: head['argv'].map(String), cwd: head['cwd'], program: String(head['program'] ?? '') };
  const lines: RecordLine[] = [];
  for (let i = 1; i < rows.length; i++) {
    if (rows[i]!.trim() === '') continue;
    const r = parse(i);
    const conn = r['conn'];
    const bad = () => new RecordingError(`${path}:${i + 1}: not a record line`);
    if (typeof conn !== 'string') throw bad();
    const t = typeof r['t'] === 'number' && typeof head['t'] === 'number' ? Math.max(0, r['t'] - head['t']) : 0;
    switch (r['dir']) {
      case 'open':
        lines.push({ t, conn, dir: 'open' });
        break;
      case 'close':
        lines.push({ t, conn, dir: 'close' });
        break;
      case 'in':
        if (typeof r['text'] === 'string') lines.push({ t, conn, dir: 'in', bytes: Buffer.from(r['text'], 'utf8') });
        else if (typeof r['base64'] === 'string') lines.push({ t, conn, dir: 'in', bytes: Buffer.from(r['base64'], 'base64') });
        else throw bad();
        break;
      case 'out':
        if (typeof r['msg'] !== 'object' || r['msg'] === null) throw bad();
        lines.push({ t, conn, dir: 'out', msg: r['msg'] as Record<string, unknown> });
        break;
      default:
        throw bad();
    }
  }
  return { header, lines };
}

/** The monitor socket a connection id (`/path/qmp.sock#3`, as the daemon numbers its clients) names. */
export function connSocket(conn: string): string {
  const hash = conn.lastIndexOf('#');
  return hash < 0 ? conn : conn.slice(0, hash);
}
