import { classify, type L2Entry, subclusterKind, subRange } from './entry.js';
import type { Qcow2Layout } from './layout.js';

/**
 * What a write to an image with extended L2 entries copies around its data:
 * the bytes [start, end) of its run of clusters (offsets from the first
 * cluster's start) are written, data and copy-on-write together, and are
 * marked allocated afterwards.
 */
export interface SubclusterCow {
  start: number;
  end: number;
}

const ctz32 = (x: number) => (x === 0 ? 32 : 31 - Math.clz32(x & -x));

/**
 * calculate_l2_meta for extended L2 entries: the copy-on-write bounds of a
 * write of [from, to) (offsets from the first cluster's start) over the
 * clusters whose entries are `old`. `keepOld`: the clusters are the
 * image's own and are written in place (handle_copied); then a write that
 * only touches allocated subclusters needs neither a copy nor an L2 update
 * (undefined). A new cluster copies what the old one had allocated on the
 * write's side (from its first allocated subcluster to its last); a
 * subcluster the write only partly covers is completed from what it reads
 * now. `invalid(i)` reports a corrupt bitmap in entry i.
 */
export function subclusterCow(L: Qcow2Layout, old: readonly L2Entry[], from: number, to: number, keepOld: boolean, version: number, externalData: boolean, invalid: (i: number) => Error): SubclusterCow | undefined {
  const cs = L.clusterSize;
  const scs = L.subclusterSize;
  let skip = keepOld;
  for (let i = 0; i < old.length; i++) {
    const e = old[i]!;
    const writeFrom = Math.max(from, i * cs);
    const writeTo = Math.min(to, (i + 1) * cs);
    const firstSc = Math.floor((writeFrom - i * cs) / scs);
    const lastSc = Math.floor((writeTo - 1 - i * cs) / scs);
    const kind = subclusterKind(e, skip ? firstSc : 0, version, externalData);
    if (kind === 'invalid') throw invalid(i);
    if (skip) {
      for (let sc = firstSc; sc <= lastSc && skip; sc++) if (subclusterKind(e, sc, version, externalData) !== 'normal') skip = false;
    }
  }
  if (skip) return undefined;

  const hosted = (e: L2Entry) => classify(e, version, externalData) === 'normal';
  const first = old[0]!;
  const firstSc = Math.floor(from / scs);
  const firstKind = subclusterKind(first, firstSc, version, externalData);
  let start: number;
  if (keepOld) start = firstKind === 'normal' ? from : firstSc * scs;
  else if (firstKind === 'compressed') start = 0;
  else if (hosted(first)) start = Math.min(firstSc, ctz32(first.alloc!)) * scs;
  else start = firstSc * scs;

  const n = old.length;
  const last = old[n - 1]!;
  const lastSc = Math.floor((to - 1 - (n - 1) * cs) / scs);
  const lastKind = subclusterKind(last, lastSc, version, externalData);
  const roundUp = (v: number, a: number) => Math.ceil(v / a) * a;
  let end: number;
  if (keepOld) end = lastKind === 'normal' ? to : roundUp(to, scs);
  else if (lastKind === 'compressed') end = roundUp(to, cs);
  else if (hosted(last)) end = roundUp(to, cs) - Math.min(L.subclusters - lastSc - 1, Math.clz32(last.alloc!)) * scs;
  else end = roundUp(to, scs);
  return { start, end };
}

/**
 * qcow2_alloc_cluster_link_l2's bitmap for cluster i of a write whose
 * bytes [cow.start, cow.end) were written: those subclusters allocated and
 * no longer zero, the others as `cur` had them.
 */
export function writtenBitmap(L: Qcow2Layout, cur: L2Entry, i: number, cow: SubclusterCow): { alloc: number; zero: number } {
  const cs = L.clusterSize;
  const from = Math.max(cow.start, i * cs) - i * cs;
  const to = Math.min(cow.end, (i + 1) * cs) - i * cs;
  const range = subRange(Math.floor(from / L.subclusterSize), Math.floor((to - 1) / L.subclusterSize) + 1);
  return { alloc: ((cur.alloc ?? 0) | range) >>> 0, zero: ((cur.zero ?? 0) & ~range) >>> 0 };
}
