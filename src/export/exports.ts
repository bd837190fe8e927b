import type { Logger } from '../log.js';
import type { BitmapSource } from '../blockdev/bitmap-ops.js';
import { lookupBitmap } from '../blockdev/bitmap-ops.js';
import { BitmapCheck, type DirtyBitmap } from '../blockdev/dirty-bitmap.js';
import type { BlockGraph } from '../blockdev/graph.js';
import { BlockBackend } from '../blockdev/block-backend.js';
import { iothreadChangeRefusal } from '../blockdev/aio-context.js';
import { filterOrCowChild } from '../blockdev/chain.js';
import type { BlockNode } from '../blockdev/node.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE } from '../image/perm.js';
import { BlockError } from '../image/errors.js';
import type { AllowOther, FuseExport } from './fuse/export.js';
import { NbdExport } from './nbd/export.js';
import { MAX_STRING_SIZE } from '../nbd/protocol.js';
import { type NbdAddress, NbdServer } from './nbd/server.js';

const fail = (msg: string) => new BlockError('INVALID_ARGUMENT', msg);

/** QEMU's id_wellformed. */
const WELL_FORMED = /^[A-Za-z][A-Za-z0-9._-]*$/;

/** What block-export-add asks for: an NBD export, or a FUSE one with `fuse`. */
export interface ExportSpec {
  id: string;
  nodeName: string;
  writable?: boolean;
  writethrough?: boolean;
  iothread?: string;
  /** The iothread names an iothread object (the QMP layer looked it up). */
  iothreadExists?: boolean;
  /** fixed-iothread: an iothread the node cannot move to fails the export (else it stays where it is). */
  fixedIothread?: boolean;
  name?: string;
  description?: string;
  bitmaps?: readonly BitmapSource[];
  allocationDepth?: boolean;
  /** A FUSE export's options (BlockExportOptionsFuse). */
  fuse?: { mountpoint: string; growable?: boolean; allowOther?: AllowOther };
  /** An export type QEMU has and blockemu does not (vhost-user-blk, vduse-blk): refused where QEMU looks for the driver. */
  unsupportedType?: string;
  /** nbd-server-add of a drive by its BlockBackend name: ejecting its medium shuts the export down (nbd_eject_notifier). */
  onEjectOf?: BlockBackend;
}

export type RemoveMode = 'safe' | 'hard';

/**
 * One export (block/export/export.c's BlockExport): its id, the node it
 * serves (which follows the node's place in the graph, as a BlockBackend
 * does), and what serves it — the NBD export clients see, or a FUSE
 * mount. It holds its node and marks its bitmaps busy until it is deleted.
 */
export class BlockExport {
  /** False once shutdown was asked for: the export goes as soon as its clients have. */
  userOwned = true;
  deleted: Promise<void> | undefined;
  /** Undoes the export's watch on another BlockBackend (ExportSpec.onEjectOf). */
  detachNotifiers: () => void = () => undefined;

  constructor(
    readonly id: string,
    readonly served: { nbd: NbdExport } | { fuse: FuseExport },
    /** The export's BlockBackend: its link to the node, which the NBD export follows. */
    readonly blk: BlockBackend,
  ) {}

  get type(): 'nbd' | 'fuse' {
    return 'nbd' in this.served ? 'nbd' : 'fuse';
  }

  /** The NBD export, for an NBD export. */
  get nbd(): NbdExport | undefined {
    return 'nbd' in this.served ? this.served.nbd : undefined;
  }

  get node(): BlockNode {
    return 'nbd' in this.served ? this.served.nbd.spec.node : this.blk.node!;
  }

  /** Connected NBD clients; a FUSE export has none that keep it (its requests end with its mount). */
  get clientCount(): number {
    return this.nbd?.clients.size ?? 0;
  }
}

/**
 * The daemon's exports and its NBD server (blockdev-nbd.c and export.c
 * together): block-export-add/-del, nbd-server-start/-stop and the
 * queries, with QEMU's checks in QEMU's order and words. `onDeleted` is
 * told of each export that is gone (BLOCK_EXPORT_DELETED).
 */
export class BlockExports {
  /** Newest first, as QEMU's list (query-block-exports shows that order). */
  private readonly exports: BlockExport[] = [];
  private server: NbdServer | undefined;

  /**
   * Told, twice, of the node an export's BlockBackend lets go of as the
   * export is deleted: blk_remove_bs drains it, which qemu-storage-daemon
   * 7.2 shows as two paused/running pairs of any job at or above it.
   */
  onBackendGone: ((node: BlockNode) => void) | undefined;

  constructor(
    private readonly graph: BlockGraph,
    private readonly onDeleted: (id: string) => void,
    private readonly log?: Logger,
  ) {}

  get nbdServer(): NbdServer | undefined {
    return this.server;
  }

  async startNbdServer(addr: NbdAddress, opts: { maxConnections?: number; tlsCreds?: string }): Promise<void> {
    if (this.server) throw fail('NBD server already running');
    const server = await NbdServer.start({ addr, maxConnections: opts.maxConnections ?? 0, log: this.log }, (exp) => this.clientLeft(exp));
    if (opts.tlsCreds !== undefined) {
      // QEMU looks the credentials up after it listens; blockemu has no objects to find.
      await server.stop();
      throw fail(`No TLS credentials with id '${opts.tlsCreds}'`);
    }
    this.server = server;
  }

  /** nbd-server-stop: every NBD export goes (each announced), then the server; other exports stay (blk_exp_close_all_type). */
  async stopNbdServer(): Promise<void> {
    const server = this.server;
    if (!server) throw fail('NBD server not running');
    await this.closeAll('nbd');
    this.server = undefined;
    await server.stop();
  }

  list(): readonly BlockExport[] {
    return this.exports;
  }

  /**
   * blk_exp_add and nbd_export_create, in QEMU's order: the export's
   * BlockBackend takes consistent read (and write) on the node, then, once
   * the NBD checks pass, stops sharing resize.
   */
  async add(spec: ExportSpec): Promise<BlockExport> {
    if (!WELL_FORMED.test(spec.id)) throw fail('Invalid block export id');
    if (this.exports.some((e) => e.id === spec.id)) throw fail(`Block export id '${spec.id}' is already in use`);
    if (spec.unsupportedType !== undefined) throw new BlockError('UNSUPPORTED', `Export type '${spec.unsupportedType}' is not supported by blockemu (only 'nbd' and 'fuse' are)`);
    const node = this.graph.findNode(spec.nodeName);
    const writable = spec.writable ?? false;
    if (node.readOnly && writable) throw fail('Cannot export read-only node as writable');
    if (spec.iothread !== undefined) {
      // blk_exp_add: the iothread must exist; the node moves to it if it can, and must with fixed-iothread.
      if (!spec.iothreadExists) throw fail(`iothread "${spec.iothread}" not found`);
      const refusal = spec.fixedIothread ? iothreadChangeRefusal(node) : undefined;
      if (refusal) throw fail(refusal);
    }
    // Exports serve non-shared storage migration: an incoming machine's image is activated for them (blk_exp_add's bdrv_activate).
    if (node.inactive) await (await import('../blockdev/inactivate.js')).activateNode(this.graph, node);
    const perm = PERM_CONSISTENT_READ | (writable ? PERM_WRITE : 0);
    if (spec.fuse) return this.addFuse(spec, spec.fuse, node, perm);
    let nbd: NbdExport | undefined;
    const blk = new BlockBackend({ perm, shared: PERM_ALL }, undefined, (moved) => {
      if (nbd) nbd.spec.node = moved;
    });
    await blk.insert(node);
    try {
      const server = this.server;
      if (!server) throw fail('NBD server not running');
      const name = spec.name ?? spec.nodeName;
      if (Buffer.byteLength(name) > MAX_STRING_SIZE) throw fail(`export name '${name}' too long`);
      if (spec.description !== undefined && Buffer.byteLength(spec.description) > MAX_STRING_SIZE) throw fail(`description '${spec.description}' too long`);
      if (server.find(name)) throw fail(`NBD server already has export named '${name}'`);
      // Nobody may resize the node while it is exported.
      await blk.setPerm({ perm, shared: PERM_ALL & ~PERM_RESIZE });
      const bitmaps = (spec.bitmaps ?? []).map((b) => this.exportBitmap(node, b, writable));
      for (const b of bitmaps) b.busy = true;
      nbd = new NbdExport(
        { name, description: spec.description, node, writable, writethrough: spec.writethrough ?? false, bitmaps, allocationDepth: spec.allocationDepth ?? false },
        server.multiConn,
      );
      const exp = new BlockExport(spec.id, { nbd }, blk);
      server.addExport(nbd);
      this.exports.unshift(exp);
      const onEject = spec.onEjectOf;
      if (onEject) {
        const notify = () => void this.shutdown(exp);
        onEject.removeNotifiers.add(notify);
        exp.detachNotifiers = () => onEject.removeNotifiers.delete(notify);
      }
      return exp;
    } catch (err) {
      await blk.remove();
      throw err;
    }
  }

  /**
   * fuse_export_create: a writable or growable export keeps resize
   * permission for its whole life (its truncates and growing writes), and
   * shares everything, as QEMU's does.
   */
  private async addFuse(spec: ExportSpec, fuse: NonNullable<ExportSpec['fuse']>, node: BlockNode, perm: number): Promise<BlockExport> {
    const writable = spec.writable ?? false;
    const growable = fuse.growable ?? false;
    const blk = new BlockBackend({ perm, shared: PERM_ALL });
    await blk.insert(node);
    try {
      if (growable || writable) await blk.setPerm({ perm: perm | PERM_RESIZE, shared: PERM_ALL });
      // Loaded with the first FUSE export: a daemon start does not need it.
      const { FuseExport } = await import('./fuse/export.js');
      const served = await FuseExport.create(
        { mountpoint: fuse.mountpoint, writable, growable, writethrough: spec.writethrough ?? false, allowOther: fuse.allowOther ?? 'auto' },
        () => blk.node!,
        this.log,
      );
      const exp = new BlockExport(spec.id, { fuse: served }, blk);
      this.exports.unshift(exp);
      return exp;
    } catch (err) {
      await blk.remove();
      throw err;
    }
  }

  /** A bitmap of the node (or of a node below it, by name) or of any node ({node, name}), usable as the export needs it. */
  private exportBitmap(node: BlockNode, src: BitmapSource, writable: boolean): DirtyBitmap {
    let bm: DirtyBitmap | undefined;
    if (typeof src === 'string') {
      let holder: BlockNode | undefined = node;
      while (holder) {
        bm = holder.dirtyBitmaps.find(src);
        if (bm) break;
        holder = filterOrCowChild(holder);
      }
      if (!bm || !holder) throw new BlockError('NOT_FOUND', `Bitmap '${src}' is not found`);
      if (!writable && !holder.readOnly && !bm.disabled) throw fail(`Enabled bitmap '${src}' incompatible with readonly export`);
    } else {
      bm = lookupBitmap(this.graph, src.node, src.name).bitmap;
    }
    bm.check(BitmapCheck.AllowReadOnly);
    return bm;
  }

  /**
   * block-export-del. An export no client uses is deleted before the reply
   * (QEMU 7.2.9 and later run the deleting bottom half before the command's
   * reply goes out: BLOCK_EXPORT_DELETED comes first); one with clients
   * goes once they have, after it.
   */
  async del(id: string, mode: RemoveMode = 'safe'): Promise<void> {
    const exp = this.exports.find((e) => e.id === id);
    if (!exp) throw new BlockError('NOT_FOUND', `Export '${id}' is not found`);
    if (!exp.userOwned) throw fail(`Export '${id}' is already shutting down`);
    if (mode === 'safe' && exp.clientCount > 0) throw fail(`export '${id}' still in use`);
    const idle = exp.clientCount === 0;
    const deleted = this.shutdown(exp);
    if (idle) await deleted;
  }

  /**
   * blk_exp_request_shutdown: clients can no longer choose the export,
   * those connected are dropped, and once they are gone the export is
   * deleted. Resolves then.
   */
  shutdown(exp: BlockExport): Promise<void> {
    if (exp.deleted) return exp.deleted;
    exp.userOwned = false;
    exp.detachNotifiers();
    const nbd = exp.nbd;
    if (nbd) {
      this.server?.removeExport(nbd);
      for (const c of nbd.clients) c.close();
    }
    exp.deleted = new Promise<void>((resolve) => {
      const finish = () => {
        const i = this.exports.indexOf(exp);
        if (i >= 0) this.exports.splice(i, 1);
        for (const b of nbd?.spec.bitmaps ?? []) b.busy = false;
        // The link goes at once (the node can be deleted next); the permissions it held loosen meanwhile.
        const node = exp.blk.node;
        // A FUSE export unmounts first: requests in flight still reach the node.
        const unmounted = 'fuse' in exp.served ? exp.served.fuse.close().catch((err: unknown) => this.log?.warn({ err, id: exp.id }, 'closing a FUSE export failed')) : undefined;
        const removed = (unmounted ?? Promise.resolve()).then(() => exp.blk.remove()).catch(() => undefined);
        // QEMU deletes in a bottom half, which since 7.2.9 runs before the reply of the command that asked.
        void removed.then(async () => {
          if (node && !node.isClosed) {
            for (let i = 0; i < 2; i++) this.onBackendGone?.(node);
            // blk_unref: a node only the export held (a blockdev-snapshot-sync overlay over an exported node) goes with it.
            await this.graph.release(node).catch((err: unknown) => this.log?.warn({ node: node.nodeName, err }, 'closing a node the export held failed'));
          }
          this.onDeleted(exp.id);
          resolve();
        });
      };
      if (!nbd || nbd.clients.size === 0) finish();
      else this.waitingForClients.set(nbd, finish);
    });
    return exp.deleted;
  }

  private readonly waitingForClients = new Map<NbdExport, () => void>();

  private clientLeft(nbd: NbdExport): void {
    const finish = this.waitingForClients.get(nbd);
    if (finish && nbd.clients.size === 0) {
      this.waitingForClients.delete(nbd);
      finish();
    }
  }

  /** Every export (of a type) asked to shut down, resolved once all are deleted (nbd-server-stop, daemon shutdown). */
  async closeAll(type?: BlockExport['type']): Promise<void> {
    // Oldest first, as qemu-storage-daemon announces them.
    const closing = [...this.exports].reverse().filter((e) => type === undefined || e.type === type);
    await Promise.all(closing.map((e) => this.shutdown(e)));
  }

  /** The daemon's end: exports, then the server (its Unix socket's file left behind, as QEMU leaves it). */
  async close(): Promise<void> {
    await this.closeAll();
    const server = this.server;
    this.server = undefined;
    await server?.stop({ keepSocketFile: true });
  }
}
