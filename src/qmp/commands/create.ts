import type { BlockGraph } from '../../blockdev/graph.js';
import type { BlockNode } from '../../blockdev/node.js';
import { type BlockdevSpec, openBlockdev } from '../../blockdev/open.js';
import type { CreateEncryption } from '../../image/crypto/create.js';
import { CreateJob, type CreateSpec } from '../../jobs/create.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import type { ArgsType } from '../schema/command.js';
import { blockdevCreate, type BlockdevCreateOptionsFile, type BlockdevCreateOptionsLUKS, type BlockdevCreateOptionsQcow2 } from '../schema/block-core.js';
import { big, type Infer } from '../schema/types.js';

type Options = ArgsType<typeof blockdevCreate>['options'];

/** Drivers whose creation blockemu implements; QEMU can create the others in the union too. */
const CREATABLE = new Set(['file', 'qcow2', 'luks']);
/** Drivers with a variant in BlockdevCreateOptions: QEMU has a bdrv_co_create for each. */
const QEMU_CREATABLE = new Set(['file', 'gluster', 'luks', 'nfs', 'parallels', 'qcow', 'qcow2', 'qed', 'rbd', 'ssh', 'vdi', 'vhdx', 'vmdk', 'vpc']);

/**
 * blockdev-create (block/create.c qmp_blockdev_create): drivers without a
 * create function are refused with QEMU's words (raw is one: QEMU 7.2 has
 * no raw variant, so driver=raw takes no members and is refused here);
 * drivers QEMU can create and blockemu cannot are refused with our own
 * clear error. Everything else surfaces as the job's error, as in QEMU.
 */
export function addCreateCommands(table: CommandTable<QmpContext>): void {
  table.add(blockdevCreate, async (a, ctx) => {
    const driver = a.options.driver;
    if (!QEMU_CREATABLE.has(driver)) throw new QmpError('GenericError', 'Driver does not support blockdev-create');
    if (!CREATABLE.has(driver)) throw new QmpError('GenericError', `blockdev-create for driver '${driver}' is not supported by blockemu`);
    ctx.jobs.checkId(a['job-id']);
    // Nodes the job opens from inline definitions go when it ends, as qcow2_co_create's bdrv_unref does.
    const opened: BlockNode[] = [];
    const release = async () => {
      for (const n of opened.splice(0)) await ctx.graph.release(n);
    };
    const job = new CreateJob(a['job-id'], ctx.jobEvents, { ...createSpec(a.options, ctx.graph, opened), release }, ctx.jobs.clock);
    ctx.jobs.add(job);
    job.start();
  });
}

// The union's inferred type does not narrow on the driver: the variant is picked by hand.
function createSpec(options: Options, graph: BlockGraph, opened: BlockNode[]): CreateSpec {
  if (options.driver === 'file') {
    const f = options as unknown as Infer<typeof BlockdevCreateOptionsFile>;
    const hint = f['extent-size-hint'];
    return { driver: 'file', filename: f.filename, size: big(f.size), preallocation: f.preallocation, extentSizeHint: hint === undefined ? undefined : big(hint) };
  }
  if (options.driver === 'luks') {
    const l = options as unknown as Infer<typeof BlockdevCreateOptionsLUKS>;
    return {
      driver: 'luks',
      file: nodeRef(graph, l.file, opened),
      size: big(l.size),
      preallocation: l.preallocation,
      encryption: { ...createEncryption({ ...l, format: 'luks' } as Record<string, unknown> & { format: 'luks' }, graph), optPrefix: '' },
    };
  }
  const o = options as unknown as Infer<typeof BlockdevCreateOptionsQcow2>;
  const ref = o.file;
  const encrypt = o.encrypt as (Record<string, unknown> & { format: 'qcow' | 'luks' }) | undefined;
  const dataRef = o['data-file'];
  return {
    driver: 'qcow2',
    file: nodeRef(graph, ref, opened),
    size: big(o.size),
    version: o.version,
    clusterSize: o['cluster-size'] === undefined ? undefined : big(o['cluster-size']),
    extendedL2: o['extended-l2'],
    preallocation: o.preallocation,
    backingFile: o['backing-file'],
    backingFormat: o['backing-fmt'],
    lazyRefcounts: o['lazy-refcounts'],
    refcountBits: o['refcount-bits'] === undefined ? undefined : big(o['refcount-bits']),
    compressionType: o['compression-type'],
    ...(dataRef !== undefined ? { dataFile: nodeRef(graph, dataRef, opened) } : {}),
    dataFileRaw: o['data-file-raw'],
    ...(encrypt ? { encryption: createEncryption(encrypt, graph) } : {}),
  };
}

/**
 * A BlockdevRef the job finds when it runs: a node's name, or an inline
 * definition opened then (bdrv_open_blockdev_ref: read-write, not the
 * monitor's), which `opened` keeps so the job lets go of it at its end.
 */
function nodeRef(graph: BlockGraph, ref: unknown, opened: BlockNode[]): () => Promise<BlockNode> {
  return async () => {
    if (typeof ref === 'string') return graph.find(ref);
    const node = await openBlockdev(graph, ref as BlockdevSpec, false);
    opened.push(node);
    return node;
  };
}

/** QCryptoBlockCreateOptions as the image layer takes it; the secret is looked up when the image is encrypted. */
function createEncryption(e: Record<string, unknown> & { format: 'qcow' | 'luks' }, graph: BlockGraph): CreateEncryption {
  const secret = e['key-secret'] as string | undefined;
  const str = (k: string) => (typeof e[k] === 'string' ? { [k.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())]: e[k] as string } : {});
  return {
    format: e.format === 'qcow' ? 'aes' : 'luks',
    ...(secret !== undefined ? { key: async () => graph.secretBytes(secret) } : {}),
    ...str('cipher-alg'),
    ...str('cipher-mode'),
    ...str('ivgen-alg'),
    ...str('ivgen-hash-alg'),
    ...str('hash-alg'),
    ...(typeof e['iter-time'] === 'number' ? { iterTime: e['iter-time'] } : {}),
  };
}

