/**
 * What the qemu-io interpreter needs from a block device: a node through a
 * BlockBackend (backendTarget: `blockemu io` and the monitor's `qemu-io`
 * alike); `BlockImage` (src/image/types.ts) satisfies the I/O part
 * structurally, which the unit tests use. The interpreter depends on this
 * small interface only.
 */
export interface IoExtent {
  /** Length of the run starting at the requested offset (at most the requested length). */
  length: number;
  /** Allocated in some image of the chain; with `depth` > 0 it is not in this one. */
  allocated: boolean;
  /** Which image of the backing chain answers (0 = this one). */
  depth?: number;
}

/** QEMU's PreallocMode, as `truncate -m` takes it. */
export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';

export interface QemuIoTarget {
  /** Writes are refused up front, as qemu-io's permission check does. */
  readonly readOnly?: boolean;
  /**
   * Takes write permission before a command that writes (qemu-io's
   * blk_set_perm); resolves to the refusal's message, or undefined. Without
   * it, `readOnly` decides.
   */
  acquireWrite?(): Promise<string | undefined>;
  /** Virtual size in bytes. */
  size(): number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** `fua`: force unit access (write -f), which the device emulates with a flush as part of the write, as QEMU's block layer does. */
  write(offset: number, data: Uint8Array, opts?: { fua?: boolean }): Promise<void>;
  writeZeroes(offset: number, length: number, opts?: { mayUnmap?: boolean; fua?: boolean }): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
  blockStatus(offset: number, length: number): Promise<IoExtent>;
  /** Writes exactly one cluster compressed (`write -c`); absent = the format cannot. */
  writeCompressed?(offset: number, data: Uint8Array): Promise<void>;
  /** Changes the virtual size (`truncate`, blk_truncate); absent = the node cannot be resized. */
  truncate?(size: number, preallocation: Preallocation): Promise<void>;
  /** The VM state area (`write -b`, `read -b`); absent: ENOTSUP. */
  saveVmState?(pos: number, data: Uint8Array): Promise<void>;
  loadVmState?(pos: number, length: number): Promise<Uint8Array>;
  /** Cluster size, to split `write -c` into the per-cluster requests writeCompressed takes. */
  info?(): { clusterSize?: number };
  /** blkdebug's breakpoints on the node's chain (break, resume, …); absent: the commands answer ENOTSUP. */
  debug?: DebugControl;
  /** What `info` prints: the driver's names, bdrv_get_info's numbers (absent: ENOTSUP) and the format-specific lines. */
  describe?(): Promise<{ names: string[]; info?: { clusterSize: number; vmStateOffset: number }; specific?: string[] }>;
  /** `reopen`'s access to the node and its BlockBackend; absent: the target cannot be reopened. */
  reopen?: ReopenControl;
}

/** What `reopen` reads and changes (reopen_f). */
export interface ReopenControl {
  /** The node's open flags and the BlockBackend's write cache mode now. */
  state(): { readOnly: boolean; cacheDirect: boolean; cacheNoFlush: boolean; writethrough: boolean; deviceAttached: boolean };
  /** The BlockBackend gives up write and write-unchanged (before a read-only reopen). */
  dropWrite(): Promise<void>;
  /** bdrv_reopen(node, options, keep_old_opts=true): throws with QEMU's message. */
  apply(options: Record<string, unknown>): Promise<void>;
  /** blk_set_enable_write_cache(!writethrough). */
  setWritethrough(writethrough: boolean): void;
}

/** bdrv_debug_breakpoint and friends: an errno name on failure (ENOTSUP: no blkdebug node; ENOENT: no such event or tag). */
export interface DebugControl {
  breakpoint(event: string, tag: string): string | undefined;
  removeBreakpoint(tag: string): string | undefined;
  resume(tag: string): string | undefined;
  /** Resolves once a request is held under `tag`. */
  waitSuspended(tag: string): Promise<void>;
  /** Resolves once any request is held at a breakpoint (at once if one is); cancel drops the wait. */
  whenHeld(): { promise: Promise<void>; cancel(): void };
}
