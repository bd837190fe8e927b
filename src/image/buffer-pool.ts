/**
 * Request buffers, reused (an NBD connection's, a mirror's copies): a
 * stream of 1 MiB requests would otherwise have the daemon allocate (and
 * the collector reclaim, and the kernel fault in) a fresh MiB for each.
 * Buffers up to `size` bytes come from the pool; larger ones are allocated
 * and dropped. A buffer goes back once the request it carried is done with
 * it (written to the node, or to the socket). Its bytes are not cleared:
 * the taker overwrites them.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly size = 1 << 20,
    private readonly keep = 16,
  ) {}

  take(length: number): Buffer {
    if (length > this.size) return Buffer.allocUnsafe(length);
    const b = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
    return b.subarray(0, length);
  }

  give(b: Buffer): void {
    if (b.buffer.byteLength !== this.size || b.byteOffset !== 0 || this.free.length >= this.keep) return;
    this.free.push(Buffer.from(b.buffer, 0, this.size));
  }
}

/**
 * Buffers of many sizes (a mirror's copies: from one chunk of its bitmap
 * to max-io bytes), reused by power-of-two class, so small copies do not
 * each hold a buffer of the largest size. At most `keepBytes` are kept.
 */
export class SizedBufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private kept = 0;

  constructor(
    private readonly keepBytes: number,
    private readonly minSize = 4096,
  ) {}

  private classOf(length: number): number {
    let size = this.minSize;
    while (size < length) size *= 2;
    return size;
  }

  take(length: number): Buffer {
    const size = this.classOf(length);
    const b = this.free.get(size)?.pop();
    if (b) this.kept -= size;
    return (b ?? Buffer.allocUnsafeSlow(size)).subarray(0, length);
  }

  give(b: Buffer): void {
    const size = b.buffer.byteLength;
    if (b.byteOffset !== 0 || size !== this.classOf(size) || this.kept + size > this.keepBytes) return;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(Buffer.from(b.buffer, 0, size));
    this.kept += size;
  }
}
