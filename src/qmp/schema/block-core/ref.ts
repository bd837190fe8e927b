/**
 * BlockdevRef and BlockdevRefOrNull: a child given inline (a whole
 * BlockdevOptions, recursively) or by node name. The variants that hold
 * them are built before the union they belong to, so the union is reached
 * through a lazy reference that blockdev-options.ts fills in; this module
 * imports none of them, which keeps module evaluation order irrelevant.
 */
import type { Infer } from '../types.js';
import { alternate, lazy, nul, type QType, str } from '../types.js';
import type { BlockdevCacheOptions, BlockdevDetectZeroesOptions, BlockdevDiscardOptions, BlockdevDriver } from './common.js';

/**
 * A validated inline node definition. The union is recursive, which
 * TypeScript cannot infer, so the base members are typed and the
 * driver's own members are left for the driver to read.
 */
export interface BlockdevDefinition {
  driver: Infer<typeof BlockdevDriver>;
  'node-name'?: string;
  discard?: Infer<typeof BlockdevDiscardOptions>;
  cache?: Infer<typeof BlockdevCacheOptions>;
  'read-only'?: boolean;
  'auto-read-only'?: boolean;
  'force-share'?: boolean;
  'detect-zeroes'?: Infer<typeof BlockdevDetectZeroesOptions>;
  [member: string]: unknown;
}

let options: QType<BlockdevDefinition> | undefined;

/** Called once by blockdev-options.ts with the finished union. */
export function defineBlockdevOptions(type: QType<BlockdevDefinition>): void {
  options = type;
}

const definition = lazy((): QType<BlockdevDefinition> => {
  if (!options) throw new Error('BlockdevOptions used before blockdev-options.ts was loaded');
  return options;
});

export const BlockdevRef: QType<BlockdevDefinition | string> = alternate('BlockdevRef', [definition, str] as const);
export const BlockdevRefOrNull: QType<BlockdevDefinition | string | null> = alternate('BlockdevRefOrNull', [definition, str, nul] as const);
