/** Small numeric and formatting helpers shared by the benches. */

export const MiB = 1 << 20;

/** Median of a non-empty list (mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of nothing');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function fmtSeconds(s: number | undefined): string {
  return s === undefined ? '—' : `${s.toFixed(3)} s`;
}

export function fmtRate(bytes: number, s: number | undefined): string {
  return s === undefined || s <= 0 ? '—' : `${(bytes / MiB / s).toFixed(1)}`;
}

/**
 * A plain-text table: first row is the header, columns padded to their
 * widest cell; numbers are easier to compare right-aligned, labels left.
 */
export function renderTable(rows: readonly (readonly string[])[], rightAligned: ReadonlySet<number>): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: readonly string[]) =>
    r.map((cell, c) => (rightAligned.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join(' | ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('-|-');
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}
