/** A tool's stdout into a pipe or file goes out as C stdio's full buffering sends it: 4 KiB blocks, the rest on flush. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockBufferedOutput } from '../../bin/commands/tool-context.js';

describe('BlockBufferedOutput', () => {
  it('holds output until a 4 KiB block is full, then sends whole blocks; flush sends the rest', () => {
    const sent: number[] = [];
    const out = new BlockBufferedOutput((b) => sent.push(b.length));
    out.write('x'.repeat(100));
    expect(sent).toEqual([]);
    out.write('y'.repeat(9000));
    expect(sent).toEqual([8192]);
    out.flush();
    expect(sent).toEqual([8192, 908]);
    out.flush();
    expect(sent).toEqual([8192, 908]);
  });

  it('sends every byte once, in order, whatever the writes (multi-byte characters split across blocks too)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme', maxLength: 3000 }), { maxLength: 12 }), (texts) => {
        const chunks: Buffer[] = [];
        const out = new BlockBufferedOutput((b) => chunks.push(Buffer.from(b)));
        for (const t of texts) out.write(t);
        out.flush();
        expect(Buffer.concat(chunks).toString()).toBe(texts.join(''));
        for (const c of chunks.slice(0, -1)) expect(c.length % 4096).toBe(0);
      }),
    );
  });
});
