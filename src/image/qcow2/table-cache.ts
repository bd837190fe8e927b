import type { ByteFile, DebugEvent } from '../byte-file.js';

/** What a cache announces on its file before reading a table in and before writing one back (QEMU's qcow2-cache.c). */
export interface TableEvents {
  load?: DebugEvent;
  write?: DebugEvent;
}

/**
 * A bounded write-back cache of cluster-sized metadata tables (L2 tables or
 * refcount blocks), keyed by host offset, least recently used evicted first.
 *
 * Callers mutate a table synchronously right after `get`/`create` and call
 * `markDirty` at once: eviction only happens inside `get`/`create`, so a table
 * is never written back half-updated. Writing dirty tables back is ordered by
 * the owner (see Qcow2Image.writeMetadata): `beforeWriteBack` runs before an
 * eviction writes a dirty table, so the owner can first write what that table
 * depends on. A table whose write fails stays dirty, as in QEMU's cache: the
 * next flush tries again, and nothing that depends on it is written before.
 */
export class TableCache {
  /** Map order is recency order: the first key is the least recently used. */
  private tables = new Map<number, Uint8Array>();
  private dirty = new Set<number>();
  private loading = new Map<number, Promise<Uint8Array>>();
  /** The key last moved to the end of `tables` (undefined when that may no longer hold). */
  private lastUsed: number | undefined;

  constructor(
    private readonly file: ByteFile,
    private readonly tableSize: number,
    private readonly maxTables: number,
    private readonly beforeWriteBack: () => Promise<void> = async () => {},
    private readonly events: TableEvents = {},
  ) {}

  /** The owner's pre-write check of a table's write (qcow2_cache_entry_flush's overlap check); throwing fails the write, the table stays dirty. */
  checkWrite: ((offset: number, size: number) => Promise<void>) | undefined;

  async get(offset: number): Promise<Uint8Array> {
    const t = this.peek(offset);
    if (t) return t;
    let p = this.loading.get(offset);
    if (!p) {
      p = this.load(offset);
      this.loading.set(offset, p);
    }
    return p;
  }

  /**
   * The table if it is cached (counts as a use), without waiting for a
   * load: hot paths write `peek(o) ?? await get(o)`, since even an await of
   * a cached table costs a turn of the microtask queue.
   */
  peek(offset: number): Uint8Array | undefined {
    const t = this.tables.get(offset);
    // The most recent use needs no reordering (a run of requests keeps hitting one table).
    if (t && offset !== this.lastUsed) {
      this.tables.delete(offset);
      this.tables.set(offset, t);
      this.lastUsed = offset;
    }
    return t;
  }

  private async load(offset: number): Promise<Uint8Array> {
    try {
      if (this.events.load) this.file.event?.(this.events.load);
      const t = await this.file.read(offset, this.tableSize);
      await this.makeRoom();
      // Someone may have created the table meanwhile; theirs wins.
      const existing = this.tables.get(offset);
      if (existing) return existing;
      this.tables.set(offset, t);
      this.lastUsed = offset;
      return t;
    } finally {
      this.loading.delete(offset);
    }
  }

  /** A new all-zero table at `offset` (not read from disk), dirty. */
  async create(offset: number, content?: Uint8Array): Promise<Uint8Array> {
    await this.makeRoom();
    const t = content ? Uint8Array.from(content) : new Uint8Array(this.tableSize);
    this.tables.delete(offset);
    this.tables.set(offset, t);
    this.lastUsed = offset;
    this.dirty.add(offset);
    return t;
  }

  /** Puts an already-written table in the cache, clean. */
  async insertClean(offset: number, content: Uint8Array): Promise<void> {
    await this.makeRoom();
    this.tables.set(offset, content);
    this.lastUsed = undefined;
    this.dirty.delete(offset);
  }

  markDirty(offset: number): void {
    if (this.tables.has(offset)) this.dirty.add(offset);
  }

  hasDirty(): boolean {
    return this.dirty.size > 0;
  }

  /** Forgets every table (qcow2_cache_empty after its flush: the caller wrote what was dirty). */
  clear(): void {
    this.tables.clear();
    this.dirty.clear();
    this.lastUsed = undefined;
  }

  /** Forgets a table whose cluster was freed; unwritten changes to it no longer matter. */
  drop(offset: number): void {
    this.tables.delete(offset);
    if (offset === this.lastUsed) this.lastUsed = undefined;
    this.dirty.delete(offset);
  }

  /** Writes every dirty table, in offset order (sequential I/O). */
  async writeDirty(): Promise<boolean> {
    if (this.dirty.size === 0) return false;
    const offsets = [...this.dirty].sort((a, b) => a - b);
    for (const off of offsets) {
      const t = this.tables.get(off);
      this.dirty.delete(off);
      if (t) await this.writeBack(off, t);
    }
    return true;
  }

  /**
   * Writes one table that was dirty (and is marked clean already, so a
   * change made while the write is under way marks it dirty again). If the
   * write fails the table is dirty again.
   */
  private async writeBack(off: number, t: Uint8Array): Promise<void> {
    try {
      await this.checkWrite?.(off, this.tableSize);
      if (this.events.write) this.file.event?.(this.events.write);
      await this.file.write(off, t);
    } catch (err) {
      if (this.tables.get(off) === t) this.dirty.add(off);
      throw err;
    }
  }

  private async makeRoom(): Promise<void> {
    while (this.tables.size >= this.maxTables) {
      let victim: number | undefined;
      for (const off of this.tables.keys()) {
        if (!this.dirty.has(off)) {
          victim = off;
          break;
        }
      }
      if (victim === undefined) {
        // All dirty: write the oldest back after what it depends on.
        victim = this.tables.keys().next().value as number;
        await this.beforeWriteBack();
        const t = this.tables.get(victim);
        if (t && this.dirty.has(victim)) {
          this.dirty.delete(victim);
          await this.writeBack(victim, t);
        }
      }
      this.tables.delete(victim);
      if (victim === this.lastUsed) this.lastUsed = undefined;
    }
  }
}
