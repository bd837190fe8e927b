import { CHILD_PRIMARY } from './child.js';
import type { BlockNode } from './node.js';

/**
 * The names QEMU gives nodes (block.c bdrv_refresh_filename): a node that
 * opening one file would recreate as it is is named by that file; any
 * other is named `json:{…}` by the options that recreate it — the
 * driver's "strong" options and its children's options, and its backing
 * child when that is not the one its image names. Queries show these
 * names, and QEMU writes them as backing file names of new images.
 */

/** What a node's name is made from. */
export interface NodeName {
  /** The name opening would recreate the node from, or '' (exact_filename). */
  exact: string;
  /** The name shown: `exact`, or `json:` and the options (filename). */
  filename: string;
  /** Options that recreate the node (full_open_options), in QEMU's insertion order. */
  options: Record<string, unknown>;
}

/** What a driver contributes to its node's name (the BlockDriver fields bdrv_refresh_filename uses). */
export interface NamePolicy {
  /** A protocol driver (bdrv_file_open): its name is its own, a format over it may take it. */
  readonly protocol: boolean;
  /** Option names (or prefixes ending in '.') that change what the node is (strong_runtime_opts). */
  readonly strong: readonly string[];
  /** drv->bdrv_gather_child_options: its children's options as the name lists them (default: each under its child's name). */
  childOptions?(node: BlockNode, names: ReadonlyMap<BlockNode, NodeName>): Record<string, unknown>;
  /** drv->bdrv_refresh_filename: the exact name from the gathered options, '' for none, or undefined to use the default rule. */
  exactName?(node: BlockNode, options: Record<string, unknown>, children: ReadonlyMap<BlockNode, NodeName>): string | undefined;
}

/** A driver naming its node by its file's name, whatever that is (cbw_refresh_filename, snapshot_access_refresh_filename). */
export const FILE_NAMING: NamePolicy = {
  protocol: false,
  strong: [],
  exactName: (node, _options, names) => {
    const file = node.child('file');
    return file ? names.get(file)!.filename : '';
  },
};

/** QEMU's filename buffers hold 4096 bytes: a longer json: name ends in "..." (bdrv_refresh_filename). */
const FILENAME_MAX = 4096;

/**
 * append_strong_runtime_options: the node's driver, filename and strong
 * options as it was opened with them; whether any but driver and filename
 * was given.
 */
function strongOptions(node: BlockNode): { options: Record<string, unknown>; found: boolean } {
  const given = node.options;
  const options: Record<string, unknown> = {};
  let found = false;
  for (const name of ['driver', 'filename', ...node.namePolicy.strong]) {
    let any = false;
    if (name.endsWith('.')) {
      for (const [k, v] of Object.entries(given)) if (k.startsWith(name)) (options[k] = v), (any = true);
    } else if (given[name] !== undefined) {
      options[name] = given[name];
      any = true;
    }
    if (any && name !== 'driver' && name !== 'filename') found = true;
  }
  if (options['driver'] === undefined) options['driver'] = node.driver;
  return { options, found };
}

/** bdrv_backing_overridden: the backing child is not the image the header names (as opened from it), or the header's is missing. */
export function backingOverridden(node: BlockNode, names: ReadonlyMap<BlockNode, NodeName>): boolean {
  const backing = node.child('backing');
  const auto = node.autoBackingFile;
  if (backing && backing === node.autoBackingNode) return false;
  if (backing) return auto !== names.get(backing)!.filename;
  return auto !== '';
}

/**
 * bdrv_refresh_filename for `node` and everything below it. `encode`
 * writes the options as QEMU's JSON writer does (QDict order); it comes
 * from the layer that knows wire shapes.
 */
export function nodeNames(node: BlockNode, encode: (options: Record<string, unknown>) => string, names = new Map<BlockNode, NodeName>()): Map<BlockNode, NodeName> {
  if (names.has(node)) return names;
  for (const c of node.childList()) nodeNames(c.node, encode, names);
  // A filter a job put in unasked is named after its one child, options and all (QEMU's implicit nodes have exactly one;
  // backup's copy-before-write, implicit here for reopen's sake, has two and keeps its driver's name).
  const links = node.childList();
  const only = node.implicit && links.length === 1 ? links[0] : undefined;
  if (only) {
    names.set(node, names.get(only.node)!);
    return names;
  }
  const overridden = backingOverridden(node, names);
  const { options, found } = strongOptions(node);
  const json = found || overridden;
  const gather = node.namePolicy.childOptions;
  if (gather) Object.assign(options, gather(node, names));
  else {
    for (const c of node.childList()) {
      if (c.name === 'backing' && !overridden) continue;
      options[c.name] = names.get(c.node)!.options;
    }
  }
  if (overridden && !node.child('backing')) options['backing'] = null;
  const policy = node.namePolicy;
  let exact = policy.exactName?.(node, options, names);
  if (exact === undefined) {
    const primary = node.childList().find((c) => c.role & CHILD_PRIMARY)?.node;
    if (primary) {
      const p = names.get(primary)!;
      exact = p.exact !== '' && primary.namePolicy.protocol && !node.isFilter && !json ? p.exact : '';
    } else {
      exact = node.openFilename ?? '';
    }
  }
  let filename = exact;
  if (filename === '') {
    filename = `json:${encode(options)}`;
    if (Buffer.byteLength(filename) >= FILENAME_MAX) filename = `${Buffer.from(filename).subarray(0, FILENAME_MAX - 4).toString()}...`;
  }
  names.set(node, { exact, filename, options });
  return names;
}
