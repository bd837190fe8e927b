/**
 * How a mirror operation's data becomes its write: chunks that read as
 * zeroes become zero pieces (where they cover whole target clusters), as
 * QEMU's mirror writes zeroes for a raw file's holes; a chunk with any
 * data is copied whole.
 */
import { describe, expect, it } from 'vitest';
import { writePiecesOf } from '../../src/jobs/mirror-pieces.js';

const K = 1024;
const rules = (cluster: number) => ({
  granularity: 64 * K,
  unmap: true,
  zeroAllowed: (o: number, l: number) => cluster === 0 || (o % cluster === 0 && l % cluster === 0),
});
const shape = (r: ReturnType<typeof writePiecesOf>) => ({
  pieces: r.pieces.map((p) => [p.offset / K, p.length / K, p.data ? 'data' : 'zero']),
  dataBytes: r.dataBytes / K,
});

describe('writePiecesOf', () => {
  it('splits a data span at chunks of zeroes; a chunk with one byte of data is data', () => {
    const buf = new Uint8Array(512 * K);
    buf.fill(1, 0, 64 * K);
    buf[300 * K] = 7; // inside the chunk at 256 KiB
    const r = writePiecesOf([{ offset: 1024 * K, length: 512 * K, zero: false }], buf, 1024 * K, rules(0));
    expect(shape(r)).toEqual({
      pieces: [
        [1024, 64, 'data'],
        [1088, 192, 'zero'],
        [1280, 64, 'data'],
        [1344, 192, 'zero'],
      ],
      dataBytes: 128,
    });
    expect(r.pieces[2]!.data![300 * K - 256 * K]).toBe(7);
  });

  it('keeps zeroes that do not cover whole target clusters as data, and joins pieces of one kind', () => {
    const buf = new Uint8Array(512 * K);
    buf.fill(1, 0, 64 * K);
    const r = writePiecesOf(
      [
        { offset: 0, length: 256 * K, zero: false },
        { offset: 256 * K, length: 256 * K, zero: true },
      ],
      buf,
      0,
      rules(256 * K),
    );
    // 64 KiB – 256 KiB reads as zero but starts inside a 256 KiB target cluster.
    expect(shape(r)).toEqual({
      pieces: [
        [0, 256, 'data'],
        [256, 256, 'zero'],
      ],
      dataBytes: 256,
    });
  });

  it('a last chunk cut short by the end of the device is looked at as it is', () => {
    const buf = new Uint8Array(100 * K);
    buf.fill(2, 70 * K);
    const r = writePiecesOf([{ offset: 0, length: 100 * K, zero: false }], buf, 0, rules(0));
    expect(shape(r)).toEqual({ pieces: [[0, 64, 'zero'], [64, 36, 'data']], dataBytes: 36 });
  });
});
