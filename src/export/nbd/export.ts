import type { DirtyBitmap } from '../../blockdev/dirty-bitmap.js';
import type { BlockNode } from '../../blockdev/node.js';
import { MAX_BUFFER_SIZE, TF } from '../../nbd/protocol.js';

export interface NbdExportSpec {
  /** The name clients ask for. */
  name: string;
  description?: string;
  node: BlockNode;
  writable: boolean;
  /** Every write is flushed before it is acknowledged (the export's write cache off). */
  writethrough: boolean;
  /** Bitmaps offered as qemu:dirty-bitmap:NAME meta contexts, in this order. */
  bitmaps: DirtyBitmap[];
  /** Offer qemu:allocation-depth. */
  allocationDepth: boolean;
}

/** A connected client of an export, as the export needs to know it: to drop it. */
export interface NbdExportClient {
  close(): void;
}

/**
 * One NBD export (nbd/server.c's NBDExport): the name, size and
 * transmission flags clients see, the bitmaps it offers, and the clients
 * that chose it.
 */
export class NbdExport {
  /**
   * The size clients see: the node's in whole sectors. QEMU's block layer
   * counts every node's length in sectors (rounded up), and the export
   * rounds that down, so a file of 1000 bytes is exported as 1024; the
   * bytes past the node's end read as zeroes.
   */
  readonly size: number;
  /** Transmission flags before structured replies add SEND_DF. */
  readonly flags: number;
  readonly clients = new Set<NbdExportClient>();

  constructor(
    readonly spec: NbdExportSpec,
    multiConn: boolean,
  ) {
    this.size = Math.ceil(spec.node.size() / 512) * 512;
    let f = TF.HAS_FLAGS | TF.SEND_FLUSH | TF.SEND_FUA | TF.SEND_CACHE;
    if (multiConn) f |= TF.CAN_MULTI_CONN;
    f |= spec.writable ? TF.SEND_TRIM | TF.SEND_WRITE_ZEROES | TF.SEND_FAST_ZERO : TF.READ_ONLY;
    this.flags = f;
  }

  get name(): string {
    return this.spec.name;
  }
  get node(): BlockNode {
    return this.spec.node;
  }

  /** The smallest request the node handles without read-modify-write: 1 for every node blockemu has. */
  get requestAlignment(): number {
    return 1;
  }

  /** The largest request clients are told they may send. */
  get maxTransfer(): number {
    return MAX_BUFFER_SIZE;
  }
}
