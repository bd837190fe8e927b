/**
 * The bit streams of the zstd format (RFC 8878, section 4.1): table
 * descriptions are read forwards, least significant bit first; entropy-coded
 * streams are written forwards and read backwards from a 1-bit end mark.
 */

/** A zstd frame that does not follow the format (or would overrun its bounds). */
export class ZstdFormatError extends Error {}

/** Up to 24 bits of buf (little-endian) starting at bit `bit` of byte `start`; bytes at or past `end` read as zeroes. */
function bitsAt(buf: Uint8Array, start: number, end: number, bit: number, n: number): number {
  const p = start + (bit >> 3);
  const v =
    p + 3 < end
      ? buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16) | (buf[p + 3]! << 24)
      : (p < end ? buf[p]! : 0) | (p + 1 < end ? buf[p + 1]! << 8 : 0) | (p + 2 < end ? buf[p + 2]! << 16 : 0);
  return (v >>> (bit & 7)) & ((1 << n) - 1);
}

/** Reads a table description forwards (FSE normalized counts). */
export class ForwardBitReader {
  private bit = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly start: number,
    private readonly end: number,
  ) {}

  peek(n: number): number {
    return bitsAt(this.buf, this.start, this.end, this.bit, n);
  }

  skip(n: number): void {
    this.bit += n;
    if (this.bit > (this.end - this.start) * 8) throw new ZstdFormatError('table description runs past its block');
  }

  /** Whole bytes taken so far. */
  get bytes(): number {
    return (this.bit + 7) >> 3;
  }
}

/** Reads an entropy-coded stream from its end mark towards its first byte. */
export class BackwardBitReader {
  /** Bits not read yet: bits [0, pos) of the stream, read from the top. Negative once read past the start. */
  private pos: number;

  constructor(
    private readonly buf: Uint8Array,
    private readonly start: number,
    private readonly end: number,
  ) {
    if (end <= start) throw new ZstdFormatError('empty bit stream');
    const last = buf[end - 1]!;
    if (last === 0) throw new ZstdFormatError('bit stream without its end mark');
    this.pos = (end - start - 1) * 8 + (31 - Math.clz32(last));
  }

  /** The next n bits (n ≤ 24) as a number, first-read bits highest; past the start, zeroes. */
  peek(n: number): number {
    const from = this.pos - n;
    if (from >= 0) return bitsAt(this.buf, this.start, this.end, from, n);
    const have = n + from;
    return have <= 0 ? 0 : bitsAt(this.buf, this.start, this.end, 0, have) << -from;
  }

  /** The next n bits, n ≤ 24. */
  read(n: number): number {
    if (n === 0) return 0;
    const v = this.peek(n);
    this.pos -= n;
    return v;
  }

  /** The next n bits, n ≤ 48 (offsets of long windows). */
  readLong(n: number): number {
    if (n <= 24) return this.read(n);
    const high = this.read(n - 24);
    return high * 0x1000000 + this.read(24);
  }

  skip(n: number): void {
    this.pos -= n;
  }

  /** Whether more bits were read than the stream holds. */
  get overflowed(): boolean {
    return this.pos < 0;
  }

  /** Whether every bit was read, no more. */
  get finished(): boolean {
    return this.pos === 0;
  }
}

/** Writes bits forwards, least significant first; closed with the end mark a backward reader starts from. */
export class BitWriter {
  private out: Uint8Array;
  private length = 0;
  private acc = 0;
  private count = 0;

  constructor(capacity = 256) {
    this.out = new Uint8Array(Math.max(16, capacity));
  }

  /** Appends the low n bits of value (n ≤ 31). */
  add(value: number, n: number): void {
    if (n > 24) {
      this.add(value % 0x1000000, 24);
      this.add(Math.floor(value / 0x1000000), n - 24);
      return;
    }
    this.acc |= (value & ((1 << n) - 1)) << this.count;
    this.count += n;
    while (this.count >= 8) {
      this.byte(this.acc & 0xff);
      this.acc >>>= 8;
      this.count -= 8;
    }
  }

  /** What is written so far, the last partial byte padded with zeroes (a forward-read description needs no end mark). */
  bytesSoFar(): Uint8Array {
    if (this.count > 0) {
      this.byte(this.acc & 0xff);
      this.acc = 0;
      this.count = 0;
    }
    return this.out.subarray(0, this.length);
  }

  /** The end mark and the last partial byte; returns the stream. */
  close(): Uint8Array {
    this.add(1, 1);
    if (this.count > 0) this.byte(this.acc & 0xff);
    this.acc = 0;
    this.count = 0;
    return this.out.subarray(0, this.length);
  }

  private byte(b: number): void {
    if (this.length === this.out.length) {
      const grown = new Uint8Array(this.out.length * 2);
      grown.set(this.out);
      this.out = grown;
    }
    this.out[this.length++] = b;
  }
}

export function highBit(v: number): number {
  return 31 - Math.clz32(v);
}
