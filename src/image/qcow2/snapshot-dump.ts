import type { Qcow2Snapshot } from './snapshots.js';
import { NO_ICOUNT } from './snapshot-table.js';
import { sizeToStr } from '../numfmt.js';

const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const left = (s: string, w: number) => s.padEnd(w);
const right = (s: string, w: number) => s.padStart(w);

/** The date as QEMU formats it: local time, "%Y-%m-%d %H:%M:%S". */
function localDate(sec: number): string {
  const d = new Date(sec * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** bdrv_snapshot_dump's column titles. */
export const SNAPSHOT_TITLES = `${left('ID', 10)}${left('TAG', 17)}${right('VM SIZE', 8)}${right('DATE', 20)}${right('VM CLOCK', 13)}${right('ICOUNT', 11)}`;

/** One bdrv_snapshot_dump row (no newline). */
export function snapshotRow(sn: Qcow2Snapshot): string {
  const secs = sn.vmClockNsec / 1_000_000_000n;
  const ms = Number((sn.vmClockNsec / 1_000_000n) % 1000n);
  const clock = `${pad(Number(secs / 3600n))}:${pad(Number((secs / 60n) % 60n))}:${pad(Number(secs % 60n))}.${pad(ms, 3)}`;
  const icount = sn.icount === NO_ICOUNT ? '' : String(BigInt.asIntN(64, sn.icount));
  return `${left(sn.id, 9)} ${left(sn.name, 16)} ${right(sizeToStr(Number(sn.vmStateSize)), 8)}${right(localDate(sn.dateSec), 20)}${right(clock, 13)}${right(icount, 11)}`;
}

/** qemu-img's "Snapshot list:" block (snapshot -l, info), nothing when there are none. */
export function snapshotList(list: readonly Qcow2Snapshot[]): string {
  if (list.length === 0) return '';
  return `Snapshot list:\n${SNAPSHOT_TITLES}\n${list.map((s) => `${snapshotRow(s)}\n`).join('')}`;
}
