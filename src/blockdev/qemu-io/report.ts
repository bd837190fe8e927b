import { fixed, two, zeroPadded } from './printf.js';

/**
 * qemu-io's human-readable numbers and its per-request report lines
 * ("wrote 512/512 bytes at offset 0" and the statistics line after it).
 */

const UNITS: ReadonlyArray<readonly [number, string]> = [
  [2 ** 60, ' EiB'],
  [2 ** 50, ' PiB'],
  [2 ** 40, ' TiB'],
  [2 ** 30, ' GiB'],
  [2 ** 20, ' MiB'],
  [2 ** 10, ' KiB'],
];

/**
 * qemu-io's cvtstr: three decimals in the largest binary unit that fits, six
 * for plain bytes, and the fraction cut at the first ".000" (so 1024 is
 * "1 KiB", 1536 "1.500 KiB", 1000 "1000 bytes", 318.132435 "318.132435 bytes").
 */
export function humanSize(value: number): string {
  for (const [unit, suffix] of UNITS) {
    if (value >= unit) return trimZeroes(fixed(value / unit, 3), suffix);
  }
  return trimZeroes(fixed(value, 6), ' bytes');
}

function trimZeroes(num: string, suffix: string): string {
  const at = num.indexOf('.000');
  return at < 0 ? num + suffix : num.slice(0, at) + suffix;
}

/** How long a request took. */
export interface Elapsed {
  sec: number;
  nsec: number;
}

export function elapsedBetween(startNs: bigint, endNs: bigint): Elapsed {
  const d = endNs > startNs ? endNs - startNs : 0n;
  return { sec: Number(d / 1_000_000_000n), nsec: Number(d % 1_000_000_000n) };
}

function seconds(t: Elapsed): number {
  return t.sec + t.nsec / 1e9;
}

/**
 * qemu-io's timestr: "00.42 sec" under a second, "H:MM:SS.ss" from one second
 * on, and always "H:MM:SS.ss" in the -C (machine-readable) form.
 */
export function timeString(t: Elapsed, verbose: boolean): string {
  const frac = t.nsec / 1e9;
  if (!verbose && t.sec === 0) return `${zeroPadded(frac, 5, 2)} sec`;
  const h = Math.floor(t.sec / 3600);
  const m = Math.floor((t.sec % 3600) / 60);
  return `${h}:${two(m)}:${zeroPadded((t.sec % 60) + frac, 5, 2)}`;
}

/**
 * The report after a request: two lines, or one comma-separated line with -C.
 * `count` is what was asked, `total` what was done (qemu-io prints both).
 */
export function reportLines(op: string, t: Elapsed, offset: number, count: number, total: number, ops: number, machine: boolean): string {
  const secs = seconds(t);
  const ts = timeString(t, machine);
  if (machine) return `${total},${ops},${ts},${fixed(total / secs, 3)},${fixed(ops / secs, 3)}\n`;
  return (
    `${op} ${total}/${count} bytes at offset ${offset}\n` +
    `${humanSize(total)}, ${ops} ops; ${ts} (${humanSize(total / secs)}/sec and ${fixed(ops / secs, 4)} ops/sec)\n`
  );
}

/**
 * qemu-io's hex dump (read -v): 16 bytes a line, the offset in at least eight
 * hex digits, and only ASCII letters and digits shown as characters — qemu-io
 * tests isalnum() in the C locale, so even a space prints as '.'.
 */
export function hexDump(buf: Uint8Array, offset: number): string {
  const lines: string[] = [];
  for (let i = 0; i < buf.length; i += 16) {
    const row = buf.subarray(i, Math.min(i + 16, buf.length));
    let hex = '';
    let text = '';
    for (const b of row) {
      hex += `${b.toString(16).padStart(2, '0')} `;
      text += isAlnum(b) ? String.fromCharCode(b) : '.';
    }
    lines.push(`${(offset + i).toString(16).padStart(8, '0')}:  ${hex} ${text}\n`);
  }
  return lines.join('');
}

function isAlnum(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
}
