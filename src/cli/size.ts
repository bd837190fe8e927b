/**
 * Sizes as qemu-img and qemu-io take them: a number with an optional binary
 * suffix (k, M, G, T, P, E; case-insensitive; b or B = bytes). Fractions are
 * allowed with a suffix ("1.5G"), as in QEMU's qemu_strtosz.
 */
const SUFFIX: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?|0x[0-9a-fA-F]+)\s*([bkmgtpeBKMGTPE]?)\s*$/.exec(text);
  if (!m) return undefined;
  const num = m[1]!.startsWith('0x') ? parseInt(m[1]!, 16) : Number(m[1]);
  const mul = SUFFIX[m[2]!.toLowerCase()]!;
  if (m[1]!.includes('.') && mul === 1) return undefined;
  const v = Math.floor(num * mul);
  return Number.isSafeInteger(v) ? v : undefined;
}
