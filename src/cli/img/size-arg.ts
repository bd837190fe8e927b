import { parseStrtosz } from '../../blockdev/qemu-io/numbers.js';

export const UINT64_MAX = (1n << 64n) - 1n;
export const INT64_MAX = (1n << 63n) - 1n;

export type SizeParse =
  | { ok: true; value: bigint; hexWithSuffix: boolean }
  | { ok: false; reason: 'invalid' | 'range' };

/**
 * Sizes as qemu-img 7.2 reads them on its command line and in -o size=…:
 * qemu_strtosz (parseStrtosz), exact as bigints. A fraction needs a unit
 * other than bytes only when it is not zero ("1024.0" and "1024.0b" are
 * 1024, iotest 049); a hex number with a unit is taken with a warning.
 */
export function parseQemuSize(text: string): SizeParse {
  const r = parseStrtosz(text);
  if (!r.ok) return { ok: false, reason: r.error === 'ERANGE' ? 'range' : 'invalid' };
  return { ok: true, value: r.value, hexWithSuffix: r.warning !== undefined };
}

/** qemu's two-line complaint for a size parameter in an -o list. */
export function sizeParamError(name: string): string {
  return (
    `Parameter '${name}' expects a non-negative number below 2^64\n` +
    'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n' +
    'and exabytes, respectively.'
  );
}
