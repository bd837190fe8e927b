import { BlockError } from '../image/errors.js';
import { BlkdebugNode, DEFAULT_IOTYPES, type InjectErrorRule, type SetStateRule } from './drivers/blkdebug.js';
import { FileNode } from './drivers/file.js';
import { NullNode } from './drivers/null.js';
import { Qcow2Node } from './drivers/qcow2.js';
import { RawNode } from './drivers/raw.js';
import type { BlockGraph } from './graph.js';
import type { BlockNode, IoType, NodeSettings } from './node.js';

/**
 * Options of one node, as blockdev-add takes them after schema validation
 * (QAPI's BlockdevOptions: member names as in QEMU). Children are either
 * inline options or the name of an existing node.
 */
export interface BlockdevSpec {
  driver: string;
  'node-name'?: string;
  'read-only'?: boolean;
  'auto-read-only'?: boolean;
  [member: string]: unknown;
}
export type BlockdevRef = BlockdevSpec | string;

/** A node opener per driver: gets validated options, opens children through `child`. */
type Opener = (name: string, spec: BlockdevSpec, readOnly: boolean, child: (role: string, ref: unknown) => Promise<BlockNode>) => Promise<BlockNode>;

const num = (v: unknown, def: number): number => (typeof v === 'number' ? v : def);

const OPENERS: Record<string, Opener> = {
  file: (name, spec, readOnly) => FileNode.open(name, spec['filename'] as string, readOnly),
  raw: async (name, spec, readOnly, child) => {
    const file = await child('file', spec['file']);
    return new RawNode(name, file, num(spec['offset'], 0), spec['size'] as number | undefined, readOnly);
  },
  'null-co': async (name, spec) => new NullNode(name, 'null-co', num(spec['size'], 1 << 30), spec['read-zeroes'] === true, num(spec['latency-ns'], 0)),
  'null-aio': async (name, spec) => new NullNode(name, 'null-aio', num(spec['size'], 1 << 30), spec['read-zeroes'] === true, num(spec['latency-ns'], 0)),
  qcow2: async (name, spec, readOnly, child) => {
    const file = await child('file', spec['file']);
    const backing = spec['backing'];
    const backingNode = backing === undefined || backing === null ? backing : await child('backing', backing);
    return Qcow2Node.open(name, file, readOnly, backingNode);
  },
  blkdebug: async (name, spec, readOnly, child) => {
    const image = await child('image', spec['image']);
    const inject = ((spec['inject-error'] as Record<string, unknown>[] | undefined) ?? []).map(
      (r): InjectErrorRule => ({
        event: r['event'] as string,
        state: num(r['state'], 0),
        iotypes: r['iotype'] === undefined ? DEFAULT_IOTYPES : new Set([r['iotype'] as IoType]),
        errno: num(r['errno'], 5),
        sector: num(r['sector'], -1),
        once: r['once'] === true,
        immediately: r['immediately'] === true,
      }),
    );
    const setState = ((spec['set-state'] as Record<string, unknown>[] | undefined) ?? []).map(
      (r): SetStateRule => ({ event: r['event'] as string, state: num(r['state'], 0), newState: r['new_state'] as number }),
    );
    return new BlkdebugNode(name, image, inject, setState, readOnly, spec);
  },
};

/** Drivers whose node can be opened; others are refused with a message naming the driver. */
export const SUPPORTED_DRIVERS = Object.keys(OPENERS);

/** Registers additional drivers (qcow2 lives above the image layer's ByteFile adapter). */
export function registerDriver(driver: string, opener: Opener): void {
  OPENERS[driver] = opener;
}

/**
 * Opens a node and its inline children and registers them (blockdev-add).
 * On failure nothing stays registered or open: children opened so far are
 * closed again, so a failed blockdev-add leaves the graph as it was.
 */
export async function openBlockdev(graph: BlockGraph, spec: BlockdevSpec, monitorOwned = true, parentReadOnly = false): Promise<BlockNode> {
  const opened: BlockNode[] = [];
  try {
    return await openNode(graph, spec, monitorOwned, parentReadOnly, undefined, opened);
  } catch (err) {
    for (const n of opened.reverse()) await graph.discard(n);
    throw err;
  }
}

async function openNode(
  graph: BlockGraph,
  spec: BlockdevSpec,
  monitorOwned: boolean,
  parentReadOnly: boolean,
  parent: NodeSettings | undefined,
  opened: BlockNode[],
): Promise<BlockNode> {
  const opener = OPENERS[spec.driver];
  if (!opener) throw new BlockError('UNSUPPORTED', `Driver '${spec.driver}' is not supported by blockemu (supported: ${SUPPORTED_DRIVERS.join(', ')})`);
  const name = graph.assignName(spec['node-name']);
  const readOnly = spec['read-only'] ?? parentReadOnly;
  // An inline child inherits discard and the cache flags from its parent (bdrv_inherited_options); detect-zeroes is its own.
  const cache = (spec['cache'] ?? {}) as { direct?: boolean; 'no-flush'?: boolean };
  const settings: NodeSettings = {
    detectZeroes: (spec['detect-zeroes'] as NodeSettings['detectZeroes'] | undefined) ?? 'off',
    discard: (spec['discard'] as NodeSettings['discard'] | undefined) ?? parent?.discard ?? 'ignore',
    cacheDirect: cache.direct ?? parent?.cacheDirect ?? false,
    cacheNoFlush: cache['no-flush'] ?? parent?.cacheNoFlush ?? false,
  };
  if (settings.detectZeroes === 'unmap' && settings.discard !== 'unmap') {
    throw new BlockError('INVALID_ARGUMENT', 'setting detect-zeroes to unmap is not allowed without setting discard operation to unmap');
  }
  const child = async (role: string, ref: unknown): Promise<BlockNode> => {
    if (ref === undefined) throw new BlockError('INVALID_ARGUMENT', `A block device must be specified for "${role}"`);
    if (typeof ref === 'string') return graph.find(ref);
    // A backing image is opened read-only unless it says otherwise (QEMU clears BDRV_O_RDWR for it).
    return openNode(graph, ref as BlockdevSpec, false, role === 'backing' ? true : readOnly, settings, opened);
  };
  const node = await opener(name, spec, readOnly, child);
  node.settings = settings;
  try {
    // Refuses a name a child took meanwhile (the same node-name twice in one tree).
    graph.add(node, monitorOwned);
  } catch (err) {
    await node.close();
    throw err;
  }
  opened.push(node);
  return node;
}
