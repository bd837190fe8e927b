/**
 * The zstd codec qcow2's compression type 1 uses: round trips of our own
 * frames, and — the oracle — the reference `zstd` tool decoding ours and us
 * decoding its frames at every level (Huffman literals, FSE tables of every
 * mode, repeat offsets, checksums, several frames). Corrupted frames must
 * fail with a format error, never overrun or throw anything else.
 */
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ZstdFormatError } from '../../../src/image/zstd/bitstream.js';
import { zstdDecompress, zstdDecompressInto } from '../../../src/image/zstd/decoder.js';
import { zstdCompress } from '../../../src/image/zstd/encoder.js';
import { huffmanLiteralsSection } from '../../../src/image/zstd/huffman-encoder.js';
import { LL_BASE, LL_BITS, ML_BASE, ML_BITS } from '../../../src/image/zstd/sequences.js';

const haveZstd = spawnSync('zstd', ['--version']).status === 0;
if (!haveZstd && process.env.CI === 'true') throw new Error('the zstd tool is missing: the codec is checked against it (CI=true, so this is a failure)');
if (!haveZstd) console.warn('SKIP: the zstd tool is missing; the checks against the reference codec need it (apt-get install zstd)');

function zstdTool(args: string[], input: Uint8Array): Uint8Array {
  const r = spawnSync('zstd', ['-q', '-c', ...args], { input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`zstd ${args.join(' ')}: ${r.stderr.toString()}`);
  return new Uint8Array(r.stdout);
}

/** Data shaped like disk contents: runs of one byte, text, random bytes, and copies of earlier parts near and far. */
const diskLike = (maxPieces: number) =>
  fc
    .array(
      fc.oneof(
        fc.record({ kind: fc.constant('fill' as const), byte: fc.integer({ min: 0, max: 255 }), len: fc.integer({ min: 1, max: 5000 }) }),
        fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 3000 }) }),
        fc.record({ kind: fc.constant('text' as const), text: fc.string({ maxLength: 400 }), times: fc.integer({ min: 1, max: 20 }) }),
        fc.record({ kind: fc.constant('copy' as const), back: fc.integer({ min: 1, max: 200_000 }), len: fc.integer({ min: 1, max: 20_000 }) }),
      ),
      { maxLength: maxPieces },
    )
    .map((pieces) => {
      const out: number[] = [];
      for (const p of pieces) {
        if (p.kind === 'fill') for (let i = 0; i < p.len; i++) out.push(p.byte);
        else if (p.kind === 'random') out.push(...p.bytes);
        else if (p.kind === 'text') out.push(...Buffer.from(p.text.repeat(p.times)));
        else if (out.length > 0) {
          const from = out.length - Math.min(p.back, out.length);
          for (let i = 0; i < p.len; i++) out.push(out[from + i]!);
        }
      }
      return Uint8Array.from(out);
    });

describe('zstd', () => {
  it('has the code tables of RFC 8878 (36 literal length, 53 match length codes)', () => {
    expect([LL_BASE.length, LL_BITS.length, ML_BASE.length, ML_BITS.length]).toEqual([36, 36, 53, 53]);
    // Each code starts where the one before it ends.
    for (let c = 1; c < 36; c++) expect(LL_BASE[c]).toBe(LL_BASE[c - 1]! + 2 ** LL_BITS[c - 1]!);
    for (let c = 1; c < 53; c++) expect(ML_BASE[c]).toBe(ML_BASE[c - 1]! + 2 ** ML_BITS[c - 1]!);
  });

  it('decodes what it encodes, and the frames shrink data that repeats', () => {
    fc.assert(
      fc.property(diskLike(40), (data) => {
        const z = zstdCompress(data);
        expect(Buffer.from(zstdDecompress(z, data.length))).toEqual(Buffer.from(data));
      }),
      { numRuns: 40 },
    );
    const cluster = new Uint8Array(65536).map((_, i) => (i * 7) % 251);
    expect(zstdCompress(cluster).length).toBeLessThan(2000);
  });

  it('fills a buffer from consecutive frames and ignores what follows the last (a sector\'s padding)', () => {
    const a = new Uint8Array(3000).fill(1);
    const b = Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff);
    const input = Buffer.concat([zstdCompress(a), zstdCompress(b), Buffer.alloc(300, 0xee)]);
    const out = new Uint8Array(8000);
    zstdDecompressInto(input, out);
    expect(Buffer.from(out)).toEqual(Buffer.concat([a, b]));
    // A frame that holds more than the buffer's room is refused.
    expect(() => zstdDecompressInto(zstdCompress(b), new Uint8Array(4096))).toThrow(ZstdFormatError);
  });

  it('refuses corrupted frames with a format error (or decodes them to some bytes), never anything worse', () => {
    fc.assert(
      fc.property(diskLike(20), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (data, flips) => {
        const z = zstdCompress(data);
        for (const [at, x] of flips) z[at % z.length]! ^= x;
        try {
          zstdDecompressInto(z, new Uint8Array(data.length));
        } catch (err) {
          expect(err).toBeInstanceOf(ZstdFormatError);
        }
      }),
      { numRuns: 300 },
    );
  });

  describe.skipIf(!haveZstd)('against the zstd tool', () => {
    it('the zstd tool decodes our frames', () => {
      fc.assert(
        fc.property(diskLike(40), (data) => {
          expect(Buffer.from(zstdTool(['-d'], zstdCompress(data)))).toEqual(Buffer.from(data));
        }),
        { numRuns: 25 },
      );
    });

    it('Huffman-codes text literals (one stream and four), which the zstd tool decodes', () => {
      let seed = 7;
      const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16;
      // Made-up words of skewed letters: few matches, many literals of a small alphabet.
      const letters = 'eeeeeeetttttaaaaooooiiinnnsshhrrdlcumwfgypbvk';
      const word = () => Array.from({ length: 2 + (rnd() % 7) }, () => letters[rnd() % letters.length]).join('');
      for (const size of [600, 3000, 60000]) {
        const text = Array.from({ length: size }, () => word() + (rnd() % 9 === 0 ? '.\n' : ' ')).join('').slice(0, size);
        const data = Buffer.from(text);
        const z = zstdCompress(data);
        // Magic, frame header (2 or 3 bytes), block header; then the literals section's type.
        const literalsAt = 4 + (data.length < 256 ? 2 : 3) + 3;
        expect({ size, type: z[literalsAt]! & 3 }).toEqual({ size, type: 2 });
        expect(Buffer.from(zstdTool(['-d'], z))).toEqual(data);
        expect(Buffer.from(zstdDecompress(z, data.length))).toEqual(data);
      }
    });

    it('Huffman-codes binary literals of all 256 values, their weights FSE-compressed', () => {
      let seed = 5;
      const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
      // Every byte value, small ones far more often (as in tables of numbers).
      const data = Uint8Array.from({ length: 50000 }, () => Math.floor(256 * rnd() ** 4));
      const z = zstdCompress(data);
      const literals = z[4 + 3 + 3]!;
      expect(literals & 3).toBe(2);
      // The tree description follows the literals header (3, 4 or 5 bytes by its size format): a byte under 128 says FSE-compressed weights.
      const headerBytes = Math.max(3, ((literals >> 2) & 3) + 2);
      expect(z[4 + 3 + 3 + headerBytes]!).toBeLessThan(128);
      expect(Buffer.from(zstdTool(['-d'], z))).toEqual(Buffer.from(data));
      expect(Buffer.from(zstdDecompress(z, data.length))).toEqual(Buffer.from(data));
    });

    it('limits Huffman codes to 11 bits (Fibonacci-skewed literals, whose optimal codes are longer)', () => {
      let seed = 11;
      const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16;
      const fib = [1, 1];
      while (fib.length < 21) fib.push(fib[fib.length - 1]! + fib[fib.length - 2]!);
      const bytes = fib.flatMap((n, i) => Array<number>(n).fill(65 + i));
      for (let i = bytes.length - 1; i > 0; i--) {
        const j = rnd() % (i + 1);
        [bytes[i], bytes[j]] = [bytes[j]!, bytes[i]!];
      }
      const lit = Uint8Array.from(bytes);
      const section = huffmanLiteralsSection(lit, lit.length + 3)!;
      expect(section).toBeDefined();
      // A frame of one compressed block: these literals and no sequences.
      const size = section.length + 1;
      const frame = Buffer.concat([
        Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xa0]),
        Buffer.from(Uint32Array.of(lit.length).buffer),
        Buffer.from([1 | (2 << 1) | ((size << 3) & 0xff), (size << 3) >> 8, (size << 3) >> 16]),
        section,
        Buffer.from([0]),
      ]);
      expect(Buffer.from(zstdTool(['-d'], frame))).toEqual(Buffer.from(lit));
      expect(Buffer.from(zstdDecompress(frame, lit.length))).toEqual(Buffer.from(lit));
    });

    it('decodes the zstd tool\'s frames at every level, with checksums and in several frames', () => {
      const levels = [['--fast=5'], ['-1'], ['-3'], ['-9'], ['-19'], ['--ultra', '-22'], ['-3', '--no-check'], ['-3', '-B4096']];
      fc.assert(
        fc.property(diskLike(40), fc.constantFrom(...levels), (data, level) => {
          expect(Buffer.from(zstdDecompress(zstdTool(level, data), data.length))).toEqual(Buffer.from(data));
        }),
        { numRuns: 40 },
      );
    });

    it('decodes the zstd tool\'s frames of structured data (where repeat offsets are used, in all their forms)', () => {
      // Tables of records with fields that change: what makes the compressor reuse recent offsets.
      const rows: string[] = [];
      for (let i = 0; i < 6000; i++) rows.push(`${i % 7},${(i * 13) % 101},${'ab'.repeat(i % 5)},${i % 3 === 0 ? 'yes' : 'no'};`);
      const entries = new Uint8Array(96 * 1024);
      const v = new DataView(entries.buffer);
      for (let i = 0; i < entries.length / 16; i++) {
        v.setBigUint64(i * 16, 0x8000000000050000n + BigInt(i % 37) * 0x10000n);
        v.setUint32(i * 16 + 8 + (i % 3) * 2, i * 2654435761);
      }
      for (const data of [Buffer.from(rows.join('')), entries])
        for (const level of ['-1', '-3', '-12', '-19', '--fast=2']) expect(Buffer.from(zstdDecompress(zstdTool([level], data), data.length))).toEqual(Buffer.from(data));
    });

    it('decodes the zstd tool\'s frames of a large mixed input (many blocks, treeless literals, repeated tables)', () => {
      const data = fc.sample(diskLike(300), { numRuns: 1, seed: 42 })[0]!;
      for (const level of ['-1', '-19']) expect(Buffer.from(zstdDecompress(zstdTool([level], data), data.length))).toEqual(Buffer.from(data));
    });
  });
});
