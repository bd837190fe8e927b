import { BlockError } from '../../image/errors.js';
import type { NamePolicy, NodeName } from '../filename.js';
import type { BlockNode } from '../node.js';
import { SIZE_HINT } from '../options.js';

/** The constraint options, in the order blkdebug_open reads and checks them. */
const LIMIT_OPTIONS = ['align', 'max-transfer', 'opt-write-zero', 'max-write-zero', 'opt-discard', 'max-discard'] as const;
export type LimitOption = (typeof LIMIT_OPTIONS)[number];
const INT_MAX = 2 ** 31 - 1;
/**
 * blkdebug_open's constraint options, checked as QEMU checks them: each
 * is a size (a negative one is refused as qemu_opts refuses it), the
 * alignment a power of 2 below INT_MAX, and every other limit below
 * INT_MAX and a multiple of the alignment in force, which is the larger
 * of `align` and the image's own (the max- limits: of their opt- limit
 * too). 0 or absent: no constraint.
 */
export function checkLimits(options: Record<string, unknown>, imageAlignment: number): Record<LimitOption, number> {
  const v = {} as Record<LimitOption, number>;
  for (const name of LIMIT_OPTIONS) {
    const x = options[name];
    const n = typeof x === 'number' ? x : typeof x === 'bigint' ? Number(x) : 0;
    if (n < 0) throw new BlockError('INVALID_ARGUMENT', `Parameter '${name}' expects a non-negative number below 2^64`, { hint: SIZE_HINT });
    v[name] = n;
  }
  // Printed as QEMU's PRIu64 does, every digit (a number past 2^53 would print rounded).
  const digits = (x: unknown) => (typeof x === 'number' && Number.isInteger(x) ? BigInt(x).toString() : String(x));
  const fail = (name: LimitOption) => new BlockError('INVALID_ARGUMENT', `Cannot meet constraints with ${name} ${digits(options[name])}`);
  if (v.align && (v.align >= INT_MAX || (v.align & (v.align - 1)) !== 0)) throw fail('align');
  const align = Math.max(v.align, imageAlignment);
  const fits = (name: LimitOption, unit: number) => {
    if (v[name] && (v[name] >= INT_MAX || v[name] % unit !== 0)) throw fail(name);
  };
  fits('max-transfer', align);
  fits('opt-write-zero', align);
  fits('max-write-zero', Math.max(v['opt-write-zero'], align));
  fits('opt-discard', align);
  fits('max-discard', Math.max(v['opt-discard'], align));
  return v;
}

/**
 * blkdebug's rules change what the node does: with any, it is named by
 * json:; without, "blkdebug:CONFIG:FILE" (blkdebug_refresh_filename).
 */
export const BLKDEBUG_NAMING: NamePolicy = {
  protocol: true,
  strong: ['config', 'inject-error.', 'set-state.', 'align', 'max-transfer', 'opt-write-zero', 'max-write-zero', 'opt-discard', 'max-discard'],
  exactName(node, options, names: ReadonlyMap<BlockNode, NodeName>) {
    const image = node.child('image');
    const inner = image ? names.get(image)!.exact : '';
    if (inner === '') return '';
    if (Object.keys(options).some((k) => k !== 'config' && k !== 'image' && k !== 'x-image' && k !== 'driver')) return '';
    return `blkdebug:${(options['config'] as string | undefined) ?? ''}:${inner}`;
  },
};
