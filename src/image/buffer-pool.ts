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
