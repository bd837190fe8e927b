/** What a cache mode decides (QEMU's BDRV_O_NOCACHE, BDRV_O_NO_FLUSH and the BlockBackend's write cache). */
export interface CacheMode {
  /** cache.direct: O_DIRECT in QEMU; blockemu accepts it (see README) and keeps the page cache. */
  direct: boolean;
  /** cache.no-flush ("unsafe"): flushes do nothing. */
  noFlush: boolean;
  /** Write cache off (qemu-io's default): every write is flushed before it completes. */
  writethrough: boolean;
}

/** bdrv_parse_cache_mode: each mode sets all three; undefined for a name it does not know. */
export function parseCacheMode(mode: string): CacheMode | undefined {
  switch (mode) {
    case 'off':
    case 'none':
      return { direct: true, noFlush: false, writethrough: false };
    case 'directsync':
      return { direct: true, noFlush: false, writethrough: true };
    case 'writeback':
      return { direct: false, noFlush: false, writethrough: false };
    case 'unsafe':
      return { direct: false, noFlush: true, writethrough: false };
    case 'writethrough':
      return { direct: false, noFlush: false, writethrough: true };
    default:
      return undefined;
  }
}
