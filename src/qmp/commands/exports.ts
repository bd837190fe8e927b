import type { BitmapSource } from '../../blockdev/bitmap-ops.js';
import type { ExportSpec } from '../../export/exports.js';
import type { NbdAddress } from '../../export/nbd/server.js';
import { BlockError } from '../../image/errors.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import * as S from '../schema/block-export.js';
import type { SocketAddress } from '../schema/sockets.js';
import type { Infer } from '../schema/types.js';

const fail = (msg: string) => new BlockError('INVALID_ARGUMENT', msg);

/** SocketAddress's members that blockemu reads (the schema validated them all). */
interface Address {
  type: string;
  path?: string;
  abstract?: boolean;
  host?: string;
  port?: string;
  'keep-alive'?: boolean;
}

/** The addresses blockemu listens on: Unix paths and TCP; the others are refused by name. */
export function nbdAddress(v: Infer<typeof SocketAddress>): NbdAddress {
  const a = v as Address;
  switch (a.type) {
    case 'unix':
      if (a.abstract) throw fail('abstract Unix socket addresses are not supported by blockemu');
      return { type: 'unix', path: a.path! };
    case 'inet':
      if (a['keep-alive']) throw fail('keep-alive option is not supported for passive sockets');
      return { type: 'inet', host: a.host!, port: a.port! };
    case 'fd':
      // QEMU's words: file descriptors come with SCM_RIGHTS, which only QEMU's own callers pass.
      throw fail('only QEMU supports file descriptor passing');
    default:
      throw fail(`'${a.type}' socket addresses are not supported by blockemu (use 'unix' or 'inet')`);
  }
}

/** BlockExportOptions with its nbd and fuse members (the schema validated them all). */
interface ExportArgs {
  type: string;
  id: string;
  'node-name': string;
  writable?: boolean;
  writethrough?: boolean;
  iothread?: string;
  'fixed-iothread'?: boolean;
  name?: string;
  description?: string;
  bitmaps?: BitmapSource[];
  'allocation-depth'?: boolean;
  mountpoint?: string;
  growable?: boolean;
  'allow-other'?: 'on' | 'off' | 'auto';
}

/** The arguments of block-export-add (and --export) as the export layer takes them. */
export function exportSpec(v: Infer<typeof S.BlockExportOptions>, isIothread: (id: string) => boolean = () => false): ExportSpec {
  const a = v as ExportArgs;
  // Checked where blk_exp_find_driver would fail, after the id checks.
  if (a.type !== 'nbd' && a.type !== 'fuse') {
    return {
      id: a.id,
      nodeName: a['node-name'],
      unsupportedType: a.type,
    };
  }
  const common: ExportSpec = {
    id: a.id,
    nodeName: a['node-name'],
    writable: a.writable,
    writethrough: a.writethrough,
    iothread: a.iothread,
    ...(a.iothread !== undefined ? { iothreadExists: isIothread(a.iothread) } : {}),
    fixedIothread: a['fixed-iothread'] ?? false,
  };
  if (a.type === 'fuse') return { ...common, fuse: { mountpoint: a.mountpoint!, growable: a.growable, allowOther: a['allow-other'] } };
  return {
    ...common,
    name: a.name,
    description: a.description,
    bitmaps: a.bitmaps,
    allocationDepth: a['allocation-depth'],
  };
}

/** nbd-server-*, block-export-* and query-block-exports (blockdev-nbd.c, block/export/export.c). */
export function addExportCommands(table: CommandTable<QmpContext>): void {
  table
    .add(S.nbdServerStart, async (a, ctx) => {
      // SocketAddressLegacy's wrapped members, flattened as socket_address_flatten does.
      const legacy = a.addr as { type: string; data: object };
      const addr = { type: legacy.type, ...legacy.data } as Infer<typeof SocketAddress>;
      await ctx.exports.startNbdServer(nbdAddress(addr), { maxConnections: a['max-connections'], tlsCreds: a['tls-creds'] });
    })
    .add(S.nbdServerStop, (_a, ctx) => ctx.exports.stopNbdServer())
    .add(S.blockExportAdd, async (a, ctx) => {
      await ctx.exports.add(exportSpec(a, (id) => ctx.objects.find(id)?.typeName === 'iothread'));
    })
    .add(S.blockExportDel, async (a, ctx) => {
      await ctx.exports.del(a.id, a.mode);
    })
    .add(S.queryBlockExports, (_a, ctx) =>
      ctx.exports.list().map((e) => ({ id: e.id, type: e.type, 'node-name': e.node.nodeName, 'shutting-down': !e.userOwned })),
    )
    .add(S.nbdServerAdd, async (a, ctx) => {
      // The legacy form: the device may be named either way, the export id is its name, and a read-only node is exported read-only without complaint.
      const node = ctx.graph.find(a.device);
      const name = a.name ?? a.device;
      await ctx.exports.add({
        id: name,
        nodeName: node.nodeName,
        writable: node.readOnly ? false : a.writable,
        name,
        description: a.description,
        bitmaps: a.bitmap === undefined ? undefined : [a.bitmap],
        onEjectOf: ctx.graph.backends.byName(a.device)?.blk,
      });
    })
    .add(S.nbdServerRemove, async (a, ctx) => {
      await ctx.exports.del(a.name, a.mode);
    });
}
