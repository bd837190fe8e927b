/**
 * blockemu's own migration stream, between two `blockemu system`
 * processes (nothing else reads it): JSON lines, a header first, the
 * machine's state at the switch-over, then an end mark. A stream that
 * stops before the end mark failed.
 */
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

const MAGIC = 'blockemu-migration';
const VERSION = 1;

/** A dirty bitmap carried along (the dirty-bitmaps capability), by the node and its name. */
export interface MigratedBitmap {
  node: string;
  name: string;
  granularity: number;
  disabled: boolean;
  persistent: boolean;
  /** The set bits, serialized as ChunkBitmap does, in base64. */
  data: string;
}

/** A piece of a drive's contents (block migration, `migrate -b`): by the drive's name; zero pieces are not sent. */
export interface MigratedBlock {
  device: string;
  offset: number;
  /** base64 */
  data: string;
}

/** What the destination needs at the switch-over. */
export interface MachineState {
  /** The drives' contents, with block migration. */
  blocks?: MigratedBlock[];
  /** Whether the source migrated its drives' contents (the destination reports its progress then). */
  blockMigration?: boolean;
  /** The source's run state when it stopped (QEMU's global state section): the destination runs only if it ran. */
  runState: string;
  bitmaps: MigratedBitmap[];
}

function line(out: Writable, value: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write(`${JSON.stringify(value)}\n`, (err) => (err ? reject(err) : resolve()));
  });
}

export function writeHeader(out: Writable): Promise<void> {
  return line(out, { magic: MAGIC, version: VERSION });
}

/**
 * What stands for the guest's RAM, sent while the machine still runs: as
 * much as QEMU sends for an idle guest (about 1 MiB), so a destination
 * that does not read holds the migration in `active`, before the
 * switch-over, as it holds QEMU's.
 */
export function writeRam(out: Writable): Promise<void> {
  return line(out, { ram: 'A'.repeat(1 << 20) });
}

/** One piece of a drive's contents, before the state. */
export function writeBlock(out: Writable, block: MigratedBlock): Promise<void> {
  return line(out, { blk: block });
}

/** The state and the end mark; the stream is ended after them. */
export async function writeState(out: Writable, state: MachineState): Promise<void> {
  await line(out, { state });
  await line(out, { end: true });
  await new Promise<void>((resolve) => out.end(resolve));
}

export class MigrationStreamError extends Error {}

/** Reads a whole stream, `onStart` once its first data has come; rejects when it is not one of ours or stops short. */
export async function readStream(input: Readable, onStart: () => void = () => undefined): Promise<MachineState> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  let header = false;
  let state: MachineState | undefined;
  const blocks: MigratedBlock[] = [];
  for await (const text of lines) {
    if (!header) onStart();
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new MigrationStreamError('Invalid argument');
    }
    if (!header) {
      if (rec['magic'] !== MAGIC || rec['version'] !== VERSION) throw new MigrationStreamError('Invalid argument');
      header = true;
    } else if (rec['blk'] !== undefined) blocks.push(rec['blk'] as MigratedBlock);
    else if (rec['state'] !== undefined) state = rec['state'] as MachineState;
    else if (rec['end'] === true) {
      if (!state) throw new MigrationStreamError('Invalid argument');
      lines.close();
      return { ...state, blocks };
    }
  }
  throw new MigrationStreamError('Input/output error');
}
