import { stat } from 'node:fs/promises';
import { constants } from 'node:os';
import type { BlockNode } from '../../blockdev/node.js';
import { errnoOf, strerror } from '../../image/errno.js';
import { BlockError } from '../../image/errors.js';
import type { Logger } from '../../log.js';
import * as P from './protocol.js';
import { FuseSession } from './session.js';

export type AllowOther = 'on' | 'off' | 'auto';

export interface FuseExportSpec {
  mountpoint: string;
  writable: boolean;
  /** Writes past the end grow the node instead of being cut short. */
  growable: boolean;
  /** Every write is on stable storage before it is acknowledged (the export's write cache off). */
  writethrough: boolean;
  allowOther: AllowOther;
}

const ERRNO = constants.errno as Record<string, number>;
const EIO = ERRNO.EIO!;
/** An operation the export refuses, answered with this errno. */
const refuse = (errno: string) => new BlockError('INVALID_ARGUMENT', strerror(errno), { errno });

/** Mountpoints exported by this process (QEMU's `exports` table): the same path twice is refused before it is stat()ed. */
const mountpoints = new Set<string>();

/** QEMU's BDRV_REQUEST_MAX_BYTES: discards and zero writes go in pieces no larger. */
const REQUEST_MAX = 0x7fffffff & ~511;

/**
 * A FUSE export (block/export/fuse.c): the node appears as the regular
 * file `mountpoint`, which reads and writes it, with QEMU's answers to
 * each operation — stat's size rounded up to whole sectors, short writes
 * at the end of a non-growable export, truncate and fallocate as
 * resizes, SEEK_DATA/SEEK_HOLE from block status, and chmod/chown only as
 * far as they keep the export's access as it is.
 */
export class FuseExport {
  private mode: number;
  private uid = process.getuid?.() ?? 0;
  private gid = process.getgid?.() ?? 0;
  private allowOther = false;
  private session: FuseSession | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private closing: Promise<void> | undefined;

  private constructor(
    readonly spec: FuseExportSpec,
    /** The node the export serves now (it follows its BlockBackend). */
    private readonly node: () => BlockNode,
    private readonly log?: Logger,
  ) {
    this.mode = P.S_IFREG | 0o400 | (spec.writable ? 0o200 : 0);
  }

  /** fuse_export_create after the generic part: QEMU's checks in its order and words, then the mount. */
  static async create(spec: FuseExportSpec, node: () => BlockNode, log?: Logger): Promise<FuseExport> {
    if (mountpoints.has(spec.mountpoint)) throw new BlockError('INVALID_ARGUMENT', `There already is a FUSE export on '${spec.mountpoint}'`);
    const st = await stat(spec.mountpoint).catch((err: unknown) => {
      throw new BlockError('INVALID_ARGUMENT', `Failed to stat '${spec.mountpoint}': ${strerror(errnoOf(err))}`);
    });
    if (!st.isFile()) throw new BlockError('INVALID_ARGUMENT', `'${spec.mountpoint}' is not a regular file`);
    const exp = new FuseExport(spec, node, log);
    mountpoints.add(spec.mountpoint);
    try {
      const mount = (allowOther: boolean) => FuseSession.mount({ mountpoint: spec.mountpoint, allowOther, onRequest: (r, s) => exp.dispatch(r, s), log });
      if (spec.allowOther === 'auto') {
        // As QEMU: with allow_other if the system lets us, else without.
        exp.allowOther = true;
        exp.session = await mount(true).catch(() => {
          exp.allowOther = false;
          return mount(false);
        });
      } else {
        exp.allowOther = spec.allowOther === 'on';
        exp.session = await mount(exp.allowOther);
      }
    } catch (err) {
      mountpoints.delete(spec.mountpoint);
      throw err;
    }
    return exp;
  }

  /** Unmounts (requests keep being answered until the mount is gone), then waits for those in flight; the mountpoint can be exported again. */
  close(): Promise<void> {
    const s = this.session;
    if (!s) return Promise.resolve();
    this.closing ??= (async () => {
      await s.close();
      await Promise.all(this.inFlight);
      this.session = undefined;
      mountpoints.delete(this.spec.mountpoint);
    })();
    return this.closing;
  }

  /** Answers a request of the session `s` (told along: the kernel's first request comes before the mount has returned it). */
  private dispatch(req: P.FuseRequest, s: FuseSession): void {
    // No answer is owed to these.
    if (req.opcode === P.OP.FORGET || req.opcode === P.OP.BATCH_FORGET || req.opcode === P.OP.INTERRUPT) return;
    const p = this.handle(req).then(
      (body) => s.reply(req.unique, 0, ...(body ? [body] : [])),
      (err: unknown) => {
        // An error with an errno is the answer (an I/O error of the node, a refusal); one without is a fault of ours.
        let errno = EIO;
        try {
          errno = ERRNO[errnoOf(err)] ?? EIO;
        } catch {
          this.log?.warn({ err, opcode: req.opcode }, 'FUSE request failed');
        }
        s.reply(req.unique, errno);
      },
    );
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** The reply's body for a request; the errno of what it throws is the error answered. */
  private async handle(req: P.FuseRequest): Promise<Buffer | undefined> {
    const b = req.body;
    switch (req.opcode) {
      case P.OP.INIT: {
        const init = P.parseInit(b);
        if (init.major !== P.FUSE_MAJOR) throw refuse('EPROTO');
        const want = P.INIT.ASYNC_READ | P.INIT.ATOMIC_O_TRUNC | P.INIT.BIG_WRITES | P.INIT.AUTO_INVAL_DATA | P.INIT.ASYNC_DIO | P.INIT.PARALLEL_DIROPS | P.INIT.MAX_PAGES;
        return P.initOut({ maxReadahead: init.maxReadahead, flags: init.flags & want, maxWrite: P.MAX_WRITE, maxPages: P.MAX_PAGES });
      }
      case P.OP.LOOKUP:
        // Only the mountpoint itself is served.
        throw refuse('ENOENT');
      case P.OP.GETATTR:
        return this.attr(req.nodeid);
      case P.OP.SETATTR:
        return this.setattr(req.nodeid, P.parseSetattr(b));
      case P.OP.OPEN:
        return P.openOut();
      case P.OP.READ:
        return this.read(P.parseIo(b));
      case P.OP.WRITE:
        return this.write(P.parseIo(b), b.subarray(P.WRITE_IN_SIZE));
      case P.OP.FALLOCATE:
        await this.fallocate(P.parseFallocate(b));
        return undefined;
      case P.OP.FSYNC:
      case P.OP.FLUSH:
        await this.node().flush();
        return undefined;
      case P.OP.RELEASE:
      case P.OP.DESTROY:
        return undefined;
      case P.OP.LSEEK:
        return this.lseek(P.parseLseek(b));
      case P.OP.STATFS:
        return P.statfsOut();
      default:
        throw refuse('ENOSYS');
    }
  }

  /** blk_getlength: the node's size in whole sectors. */
  private length(): number {
    return Math.ceil(this.node().size() / 512) * 512;
  }

  private async attr(ino: bigint): Promise<Buffer> {
    const node = this.node();
    const length = this.length();
    const allocated = (await node.imageInfo()).actualSize ?? 0;
    return P.attrOut(
      {
        ino: Number(ino),
        size: length,
        blocks: Math.ceil((allocated > 0 ? allocated : length) / 512),
        time: Math.floor(Date.now() / 1000),
        mode: this.mode,
        uid: this.uid,
        gid: this.gid,
        blksize: node.requestAlignment(),
      },
      1,
    );
  }

  /** Resizing, and changing the mode (and owner with allow_other) as far as it permits what the mount does. */
  private async setattr(ino: bigint, a: P.SetattrIn): Promise<Buffer> {
    let supported = P.FATTR.SIZE | P.FATTR.MODE;
    if (this.allowOther) supported |= P.FATTR.UID | P.FATTR.GID;
    if (a.valid & ~supported) throw refuse('ENOTSUP');
    if (a.valid & P.FATTR.MODE) {
      // Without allow_other nobody else can reach the file, so group and other bits mean nothing.
      if (!this.allowOther && (a.mode & 0o077) !== 0) throw refuse('EPERM');
      if (!this.spec.writable && (a.mode & 0o222) !== 0) throw refuse('EROFS');
    }
    if (a.valid & P.FATTR.SIZE) {
      if (!this.spec.writable) throw refuse('EACCES');
      await this.truncate(a.size);
    }
    if (a.valid & P.FATTR.MODE) this.mode = (a.mode & 0o7777) | P.S_IFREG;
    if (a.valid & P.FATTR.UID) this.uid = a.uid;
    if (a.valid & P.FATTR.GID) this.gid = a.gid;
    return this.attr(ino);
  }

  private truncate(size: number, prealloc: 'off' | 'falloc' = 'off'): Promise<void> {
    return this.node().resize(size, prealloc);
  }

  /** Reads end at the export's end (clients expect a short read there); past the node's own end, zeroes. */
  private async read(r: P.IoIn): Promise<Buffer> {
    const size = Math.max(0, Math.min(r.size, this.length() - r.offset));
    const buf = Buffer.alloc(size);
    const node = this.node();
    const inNode = Math.max(0, Math.min(size, node.size() - r.offset));
    if (inNode > 0) await node.readInto(buf.subarray(0, inNode), r.offset);
    return buf;
  }

  /** Writes past the end grow a growable export and are cut short on another. */
  private async write(w: P.IoIn, data: Buffer): Promise<Buffer> {
    if (!this.spec.writable) throw refuse('EACCES');
    let size = Math.min(w.size, data.length);
    const length = this.length();
    if (w.offset + size > length) {
      if (this.spec.growable) await this.truncate(w.offset + size);
      else size = Math.max(0, length - w.offset);
    }
    if (size > 0) await this.node().write(w.offset, data.subarray(0, size), { fua: this.spec.writethrough });
    return P.writeOut(size);
  }

  /** fallocate: allocation only at the end (a resize), PUNCH_HOLE as discards, ZERO_RANGE as zero writes. */
  private async fallocate(f: P.FallocateIn): Promise<void> {
    if (!this.spec.writable) throw refuse('EACCES');
    const len = this.length();
    let { offset, length } = f;
    if (f.mode & P.FALLOC.KEEP_SIZE) length = Math.min(length, len - offset);
    const node = this.node();
    if (f.mode === 0) {
      if (offset < len) throw refuse('EOPNOTSUPP');
      if (offset > len) await this.truncate(offset);
      await this.truncate(offset + length, 'falloc');
    } else if (f.mode & P.FALLOC.PUNCH_HOLE) {
      if (!(f.mode & P.FALLOC.KEEP_SIZE)) throw refuse('EINVAL');
      for (; length > 0; ) {
        const n = Math.min(length, REQUEST_MAX);
        await node.discard(offset, n);
        offset += n;
        length -= n;
      }
    } else if (f.mode & P.FALLOC.ZERO_RANGE) {
      if (!(f.mode & P.FALLOC.KEEP_SIZE) && offset + length > len) await this.truncate(offset + length);
      for (; length > 0; ) {
        const n = Math.min(length, REQUEST_MAX);
        await node.writeZeroes(offset, n);
        offset += n;
        length -= n;
      }
    } else {
      throw refuse('EOPNOTSUPP');
    }
  }

  /** SEEK_DATA / SEEK_HOLE over the whole chain's block status; the sectors past the node's end are a hole. */
  private async lseek(l: P.LseekIn): Promise<Buffer> {
    if (l.whence !== P.SEEK_DATA && l.whence !== P.SEEK_HOLE) throw refuse('EINVAL');
    const node = this.node();
    for (let offset = l.offset; ; ) {
      const size = node.size();
      if (offset >= size) {
        if (offset > this.length() || l.whence === P.SEEK_DATA) throw refuse('ENXIO');
        return P.lseekOut(offset);
      }
      const e = await node.blockStatus(offset, size - offset);
      if (e.data === (l.whence === P.SEEK_DATA)) return P.lseekOut(offset);
      if (e.length <= 0) throw refuse('ENXIO');
      offset += e.length;
    }
  }
}
