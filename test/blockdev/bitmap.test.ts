import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChunkBitmap } from '../../src/blockdev/bitmap.js';

describe('ChunkBitmap', () => {
  it('agrees with a set of chunks on random operations', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        fc.array(fc.tuple(fc.constantFrom('set', 'clear', 'range'), fc.nat(), fc.nat({ max: 70000 })), { maxLength: 100 }),
        (chunks, ops) => {
          const g = 512;
          const size = chunks * g - (chunks > 1 ? 100 : 0);
          const b = new ChunkBitmap(size, g);
          const model = new Set<number>();
          for (const [op, a, len] of ops) {
            const c = a % b.chunks;
            if (op === 'set') (b.set(c), model.add(c));
            else if (op === 'clear') (b.clear(c), model.delete(c));
            else {
              const off = a % size;
              const l = Math.min(len, size - off);
              b.setRange(off, l);
              if (l > 0) for (let x = Math.floor(off / g); x <= Math.floor((off + l - 1) / g); x++) model.add(x);
            }
          }
          const listed: number[] = [];
          for (let c = b.nextSet(0); c >= 0; c = b.nextSet(c + 1)) listed.push(c);
          expect(listed).toEqual([...model].sort((x, y) => x - y));
          expect(b.count).toBe(model.size);
          // hbitmap_count: the last chunk counts whole, past the device's end too.
          expect(b.dirtyBytes).toBe(model.size * g);
        },
      ),
    );
  });

  it('serialises as a qcow2 image stores bits (bit j of byte k is chunk 8k+j, whole 64-bit words) and back', () => {
    const b = new ChunkBitmap(100 * 512, 512);
    for (const c of [0, 9, 63, 64, 99]) b.set(c);
    const bytes = b.serialize();
    expect(bytes.length).toBe(16);
    expect([...bytes]).toEqual([0x01, 0x02, 0, 0, 0, 0, 0, 0x80, 0x01, 0, 0, 0, 0x08, 0, 0, 0]);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3000 }), fc.array(fc.nat(), { maxLength: 200 }), (chunks, sets) => {
        const x = new ChunkBitmap(chunks * 4096, 4096);
        for (const s of sets) x.set(s % chunks);
        const padded = x.serialize();
        // Bits past the last chunk (written by other tools) are ignored.
        if (chunks % 8 !== 0) padded[Math.floor(chunks / 8)]! |= 0x80;
        const y = ChunkBitmap.deserialize(chunks * 4096, 4096, padded);
        expect(y.count).toBe(x.count);
        const differ = Array.from({ length: chunks }, (_, c) => c).filter((c) => y.get(c) !== x.get(c));
        expect(differ).toEqual([]);
      }),
    );
  });
});
