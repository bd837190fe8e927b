import { BlockError } from '../errors.js';

/** One entry of the feature name table extension: type (0 incompatible, 1 compatible, 2 autoclear), bit, name. */
const ENTRY_BYTES = 48;
const NAME_BYTES = 46;

/**
 * The "Unsupported qcow2 feature(s): …" refusal of an image with
 * incompatible bits we do not know: the bits the image's own feature name
 * table names are listed by name (in table order), the rest as one hex
 * mask, as QEMU's report_unsupported_feature words it. `table` is the
 * last feature table extension read before any malformed one, if any.
 */
export function unsupportedFeatures(filename: string, table: Uint8Array | undefined, unknown: bigint): BlockError {
  const names: string[] = [];
  let mask = unknown;
  // The table ends at its first entry with an empty name (QEMU reads it into a zeroed buffer one entry longer).
  for (let off = 0; table && off < table.length; off += ENTRY_BYTES) {
    const entry = new Uint8Array(ENTRY_BYTES);
    entry.set(table.subarray(off, off + ENTRY_BYTES));
    if (entry[2] === 0) break;
    const bit = 1n << BigInt(entry[1]! & 63);
    if (entry[0] !== 0 || (mask & bit) === 0n) continue;
    const raw = entry.subarray(2, 2 + NAME_BYTES);
    const nul = raw.indexOf(0);
    names.push(new TextDecoder().decode(nul < 0 ? raw : raw.subarray(0, nul)));
    mask &= ~bit;
  }
  if (mask !== 0n) names.push(`Unknown incompatible feature: ${mask.toString(16)}`);
  return new BlockError('UNSUPPORTED', `Could not open '${filename}': Unsupported qcow2 feature(s): ${names.join(', ')}`);
}
