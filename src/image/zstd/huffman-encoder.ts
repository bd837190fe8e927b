/**
 * Huffman coding of a compressed block's literals (RFC 8878, 4.2.1), the
 * compressor's side: code lengths limited to 11 bits, the tree description
 * (weights-encoder.ts), and one or four streams. Used when it makes the
 * literals smaller.
 */
import { BitWriter } from './bitstream.js';
import { treeDescription } from './weights-encoder.js';

const MAX_BITS = 11;

/** Code lengths from symbol counts: Huffman's, then limited to MAX_BITS and made a complete code. */
function codeLengths(counts: Uint32Array, maxSymbol: number): Uint8Array {
  const symbols: number[] = [];
  for (let s = 0; s <= maxSymbol; s++) if (counts[s]! > 0) symbols.push(s);
  const lengths = new Uint8Array(maxSymbol + 1);
  // Huffman's tree over the present symbols: nodes merged two least frequent at a time (a sorted queue pair).
  const leaves = symbols.map((s) => ({ w: counts[s]!, s, parent: -1 })).sort((a, b) => a.w - b.w);
  const nodes: Array<{ w: number; s: number; parent: number }> = [...leaves];
  const inner: number[] = [];
  let li = 0;
  let ii = 0;
  const take = () => {
    if (ii >= inner.length || (li < leaves.length && nodes[li]!.w <= nodes[inner[ii]!]!.w)) return li++;
    return inner[ii++]!;
  };
  for (let k = 1; k < leaves.length; k++) {
    const a = take();
    const b = take();
    nodes.push({ w: nodes[a]!.w + nodes[b]!.w, s: -1, parent: -1 });
    nodes[a]!.parent = nodes[b]!.parent = nodes.length - 1;
    inner.push(nodes.length - 1);
  }
  const depth = new Int32Array(nodes.length);
  for (let i = nodes.length - 2; i >= 0; i--) depth[i] = depth[nodes[i]!.parent]! + 1;
  for (let i = 0; i < leaves.length; i++) lengths[leaves[i]!.s] = Math.min(depth[i]!, MAX_BITS);
  // Kraft sum in units of 2^-MAX_BITS: too long codes clipped make it over one; lengthen the longest short enough ones.
  const full = 1 << MAX_BITS;
  let kraft = 0;
  for (const s of symbols) kraft += full >> lengths[s]!;
  const byCount = [...symbols].sort((a, b) => counts[a]! - counts[b]!);
  while (kraft > full) {
    let pick = -1;
    for (const s of byCount) if (lengths[s]! < MAX_BITS && (pick < 0 || lengths[s]! > lengths[pick]!)) pick = s;
    kraft -= full >> (lengths[pick]! + 1);
    lengths[pick]!++;
  }
  // Then shorten the most frequent codes while the sum stays at most one, until it is exactly one (a complete code).
  for (let changed = true; kraft < full && changed; ) {
    changed = false;
    for (let i = byCount.length - 1; i >= 0; i--) {
      const s = byCount[i]!;
      const gain = full >> lengths[s]!;
      if (lengths[s]! > 1 && kraft + gain <= full) {
        lengths[s]!--;
        kraft += gain;
        changed = true;
        if (kraft === full) break;
      }
    }
  }
  return lengths;
}

/** Canonical codes as the decoder's table assigns them: by weight (longest code first), then by symbol. */
function codes(lengths: Uint8Array, maxBits: number): Uint16Array {
  const out = new Uint16Array(lengths.length);
  let pos = 0;
  for (let len = maxBits; len >= 1; len--) {
    for (let s = 0; s < lengths.length; s++) {
      if (lengths[s] !== len) continue;
      out[s] = pos >> (maxBits - len);
      pos += 1 << (maxBits - len);
    }
  }
  return out;
}

function stream(lit: Uint8Array, from: number, to: number, lengths: Uint8Array, code: Uint16Array): Uint8Array {
  const w = new BitWriter(((to - from) * MAX_BITS) / 8 + 8);
  // The decoder reads backwards: the last literal is written first.
  for (let i = to - 1; i >= from; i--) w.add(code[lit[i]!]!, lengths[lit[i]!]!);
  return w.close();
}

/**
 * The literals section (header, tree, streams) for `lit` Huffman-coded, or
 * undefined when Huffman coding does not apply (a largest byte over 128,
 * one distinct byte) or would not be smaller than `rawBytes`.
 */
export function huffmanLiteralsSection(lit: Uint8Array, rawBytes: number): Uint8Array | undefined {
  const n = lit.length;
  if (n < 32 || n > 128 * 1024) return undefined;
  const counts = new Uint32Array(256);
  let maxSymbol = 0;
  for (let i = 0; i < n; i++) counts[lit[i]!]!++;
  let distinct = 0;
  for (let s = 0; s < 256; s++) {
    if (counts[s]! === 0) continue;
    distinct++;
    maxSymbol = s;
  }
  if (distinct < 2) return undefined;
  const lengths = codeLengths(counts, maxSymbol);
  let maxBits = 0;
  for (const l of lengths) maxBits = Math.max(maxBits, l);
  const code = codes(lengths, maxBits);
  const weights = Array.from({ length: maxSymbol }, (_, s) => (lengths[s]! > 0 ? maxBits + 1 - lengths[s]! : 0));
  const tree = treeDescription(weights);
  if (!tree) return undefined;
  let streams: Uint8Array[];
  const four = n > 1023;
  if (!four) streams = [stream(lit, 0, n, lengths, code)];
  else {
    const part = (n + 3) >> 2;
    streams = [0, 1, 2, 3].map((k) => stream(lit, k * part, Math.min(n, (k + 1) * part), lengths, code));
    if (streams.slice(0, 3).some((s) => s.length > 0xffff)) return undefined;
  }
  const jump = four ? 6 : 0;
  const compressed = tree.length + jump + streams.reduce((a, s) => a + s.length, 0);
  // Size format: 0 one stream (10-bit sizes); four streams with 10, 14 or 18-bit sizes.
  const sf = !four ? 0 : Math.max(n, compressed) < 1024 ? 1 : Math.max(n, compressed) < 16384 ? 2 : 3;
  if (!four && compressed > 1023) return undefined;
  const header: number[] = [];
  if (sf <= 1) {
    const v = 2 | (sf << 2) | (n << 4) | (compressed << 14);
    header.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff);
  } else if (sf === 2) {
    const v = (2 | (2 << 2) | (n << 4) | (compressed << 18)) >>> 0;
    header.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  } else {
    const v = (2 | (3 << 2) | (n << 4) | ((compressed & 0x3ff) << 22)) >>> 0;
    header.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff, compressed >>> 10);
  }
  const total = header.length + compressed;
  if (total >= rawBytes) return undefined;
  const out = new Uint8Array(total);
  out.set(header);
  let p = header.length;
  out.set(tree, p);
  p += tree.length;
  if (four) {
    for (let k = 0; k < 3; k++) {
      out[p++] = streams[k]!.length & 0xff;
      out[p++] = streams[k]!.length >> 8;
    }
  }
  for (const s of streams) {
    out.set(s, p);
    p += s.length;
  }
  return out;
}
