import fc from 'fast-check';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockError } from '../../../src/image/errors.js';
import { createImage, openImage } from '../../../src/image/open.js';
import type { Qcow2Image } from '../../../src/image/qcow2/image.js';
// The cases run in this worker, against the built dist/ (npm test builds it first).
import { messageProblem } from '../../fixtures/fuzz-worker.mjs';
import { qemu, qemuImg, qemuIo } from '../../helpers/qemu.js';

/**
 * Hostile images: valid qcow2 files (made by qemu-img and by blockemu) with
 * bytes of their metadata changed, at random or aimed at the fields that
 * matter. Opening, reading, block status, writing, flushing and closing them
 * may fail, but only with a BlockError that says what is wrong; never another
 * exception, a hang, or an allocation sized by a hostile field.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
const CASE_TIMEOUT_MS = 5_000;
const RSS_GROWTH_LIMIT = 1 << 30;
const WORKER = new URL('../../fixtures/fuzz-worker.mjs', import.meta.url);

/** Where a structure lies in the file: mutations aim inside it. */
interface Region {
  name: string;
  start: number;
  end: number;
}
interface Sample {
  name: string;
  dir: string;
  bytes: Uint8Array;
  cs: number;
  version: number;
  regions: Region[];
  /** Byte positions of 64-bit entries worth aiming at, per table kind (so the few L1 and refcount table entries are hit as often as the many L2 ones). */
  entries: { l1: number[]; l2: number[]; reftable: number[] };
  l1: number;
  reftable: number;
  l2s: number[];
  extStart: number;
}

const u32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at);
const raw64 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getBigUint64(at);
/** The offset field (bits 9-55) of a table entry. */
const u64 = (b: Uint8Array, at: number) => Number(raw64(b, at) & 0x00ffffff_fffffe00n);

/** The test's own reading of an intact image's layout (independent of src/). */
function describeImage(name: string, dir: string, bytes: Uint8Array): Sample {
  const cs = 2 ** u32(bytes, 20);
  const version = u32(bytes, 4);
  const hdrLen = version === 3 ? u32(bytes, 100) : 72;
  let ext = hdrLen;
  while (ext + 8 <= cs && u32(bytes, ext) !== 0) ext += 8 + Math.ceil(u32(bytes, ext + 4) / 8) * 8;
  const l1 = u64(bytes, 40);
  const l1Size = u32(bytes, 36);
  const reftable = u64(bytes, 48);
  const rtBytes = u32(bytes, 56) * cs;
  const regions: Region[] = [
    { name: 'header', start: 0, end: hdrLen },
    { name: 'extensions', start: hdrLen, end: ext + 8 },
    { name: 'L1', start: l1, end: l1 + l1Size * 8 },
    { name: 'refcount table', start: reftable, end: reftable + rtBytes },
  ];
  const entries: Sample['entries'] = { l1: [], l2: [], reftable: [] };
  const l2s: number[] = [];
  for (let i = 0; i < l1Size; i++) {
    const l2 = u64(bytes, l1 + i * 8);
    entries.l1.push(l1 + i * 8);
    if (l2 === 0) continue;
    l2s.push(l2);
    regions.push({ name: `L2 ${i}`, start: l2, end: l2 + cs });
    for (let j = 0; j < cs / 8; j++) {
      const at = l2 + j * 8;
      if (bytes[at] !== 0 || u32(bytes, at + 4) !== 0 || j % 16 === 0) entries.l2.push(at);
      // Compressed data: its bytes are a target too (a corrupt deflate stream).
      if ((bytes[at]! & 0x40) !== 0) {
        const start = Number(raw64(bytes, at) & ((1n << BigInt(62 - (Math.log2(cs) - 8))) - 1n));
        regions.push({ name: `compressed data ${i}.${j}`, start, end: start + 64 });
      }
    }
  }
  for (let i = 0; i < rtBytes / 8; i++) {
    const rb = u64(bytes, reftable + i * 8);
    if (rb !== 0 || i < 2) entries.reftable.push(reftable + i * 8);
    if (rb !== 0) regions.push({ name: `refcount block ${i}`, start: rb, end: rb + cs });
  }
  return { name, dir, bytes, cs, version, regions, entries, l1, reftable, l2s, extStart: hdrLen };
}

type Mutation = { what: string; at: number; bytes: Uint8Array };

const be64 = (v: bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v));
  return b;
};
const be32 = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0);
  return b;
};

/** Mutations for one sample: random bytes in its structures and values aimed at what parsers get wrong. */
function mutation(s: Sample): fc.Arbitrary<Mutation> {
  const cs = BigInt(s.cs);
  const eof = BigInt(s.bytes.length);
  const COPIED = 1n << 63n;
  // Offsets: zero, inside the header, unaligned, at and past EOF, at other metadata (loops), beyond 2^53 and 2^64.
  const offsets = [0n, 8n, 0x48n, cs - 1n, cs, cs + cs / 2n, eof, ((eof + cs - 1n) / cs) * cs, eof + (1n << 30n), 1n << 40n, 1n << 53n, (1n << 55n) - cs, 1n << 56n, (1n << 64n) - 1n, BigInt(s.l1), BigInt(s.reftable), ...s.l2s.map(BigInt)];
  const specials32 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 21, 22, 31, 32, 63, 64, 65, 104, 105, 112, 1023, 1024, s.cs - 8, s.cs, s.cs + 8, 0x7fffffff, 0x80000000, 0xffffffff];
  const region = fc.constantFrom(...s.regions.filter((r) => r.end > r.start));
  const u64Fields = [8, 24, 40, 48, 64, ...(s.version === 3 ? [72, 80, 88] : [])];
  const u32Fields = [4, 16, 20, 32, 36, 56, 60, ...(s.version === 3 ? [96, 100] : [])];
  const entryValue = fc.oneof(
    fc.constantFrom(...offsets).map((o) => o | COPIED),
    fc.constantFrom(...offsets),
    // Reserved bits, the compressed flag over an ordinary entry, the zero flag, all ones.
    fc.constantFrom(1n << 56n, 1n << 60n, 0x2n, 0x100n, 1n << 62n, (1n << 62n) | ((1n << 62n) - 1n), 1n, (1n << 64n) - 1n).map((b) => b | (BigInt(s.l1) + cs) | COPIED),
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  );
  const arbs: fc.Arbitrary<Mutation>[] = [
    fc.tuple(region, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([r, o, v]) => ({ what: `byte in ${r.name}`, at: r.start + (o % (r.end - r.start)), bytes: Uint8Array.of(v) })),
    fc.tuple(region, fc.nat(), fc.integer({ min: 0, max: 7 })).map(([r, o, bit]) => {
      const at = r.start + (o % (r.end - r.start));
      return { what: `bit ${bit} flipped in ${r.name}`, at, bytes: Uint8Array.of((s.bytes[at] ?? 0) ^ (1 << bit)) };
    }),
    fc.tuple(fc.constantFrom(...u64Fields), fc.oneof(fc.constantFrom(...offsets), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }))).map(([at, v]) => ({ what: `header u64 @${at} = 0x${v.toString(16)}`, at, bytes: be64(v) })),
    fc.tuple(fc.constantFrom(...u32Fields), fc.oneof(fc.constantFrom(...specials32), fc.nat())).map(([at, v]) => ({ what: `header u32 @${at} = ${v}`, at, bytes: be32(v) })),
    fc.tuple(fc.constantFrom(...Object.entries(s.entries).filter(([, list]) => list.length > 0)).chain(([kind, list]) => fc.tuple(fc.constant(kind), fc.constantFrom(...list))), entryValue).map(([[kind, at], v]) => ({
      what: `${kind} entry @0x${at.toString(16)} = 0x${v.toString(16)}`,
      at,
      bytes: be64(v),
    })),
    // The first extension's type and length: a huge length, a second backing format, a data file, bitmaps, encryption.
    fc.tuple(fc.constantFrom(0xe2792aca, 0x6803f857, 0x23852875, 0x0537be77, 0x44415441, 0x12345678), fc.constantFrom(...specials32)).map(([type, len]) => ({
      what: `extension 0x${type.toString(16)} length ${len}`,
      at: s.extStart,
      bytes: Uint8Array.of(...be32(type), ...be32(len), ...new Uint8Array(16).fill(0x41)),
    })),
    // A backing file name pointing at the image itself (a loop), a missing file, a protocol, a directory, NUL bytes (QEMU reads a C string: no backing file).
    fc.constantFrom('case.qcow2', 'missing.qcow2', 'json:{"driver":"null-co"}', './', '', '\0\0').map((name) => {
      const bytes = new Uint8Array(12 + name.length);
      new DataView(bytes.buffer).setBigUint64(0, BigInt(s.cs - 64));
      new DataView(bytes.buffer).setUint32(8, name.length);
      bytes.set(new TextEncoder().encode(name), 12);
      return { what: `backing file '${name}'`, at: 8, bytes };
    }),
  ];
  if (s.version === 3) arbs.push(fc.integer({ min: 0, max: 63 }).map((bit) => ({ what: `incompatible bit ${bit}`, at: 72, bytes: be64(1n << BigInt(bit)) })));
  return fc.oneof(...arbs);
}

/** Applies mutations; a backing name goes to the end of cluster 0 (where the offset set by the mutation points). */
function mutate(s: Sample, ms: Mutation[]): Uint8Array {
  const out = Uint8Array.from(s.bytes);
  for (const m of ms) {
    // Bytes past the end of the file are dropped: the structure (e.g. compressed data) may end early.
    if (m.at < out.length) out.set(m.bytes.subarray(0, Math.min(m.bytes.length, out.length - m.at)), m.at);
    if (m.what.startsWith('backing file')) out.set(m.bytes.subarray(12, 12 + 64), s.cs - 64);
  }
  return out;
}

/** The main thread's check of an error from an in-process open (same rules as the worker's). */
function expectBlockError(err: unknown, step: string): void {
  if (!(err instanceof BlockError)) throw new Error(`${step} threw ${(err as Error)?.name ?? typeof err} instead of a BlockError: ${String(err)}`);
  const problem = messageProblem(err.message);
  if (problem) throw new Error(`${step}: BlockError message ${problem}: ${JSON.stringify(err.message.slice(0, 300))}`);
}

/**
 * Runs cases in a worker thread (test/fixtures/fuzz-worker.mjs) and
 * terminates it when a case does not answer in time: a loop of settled
 * promises never lets a timer in its own thread fire. Meanwhile this thread
 * samples the process's RSS, which includes the worker's allocations.
 */
class CaseRunner {
  private worker: Worker | undefined;

  private async start(): Promise<Worker> {
    const w = new Worker(WORKER, { workerData: { fuzzWorker: true } });
    await new Promise<void>((res, rej) => {
      w.once('message', () => res());
      w.once('error', rej);
    });
    return w;
  }

  /** Undefined when the case passed; otherwise what went wrong. Also returns the peak RSS seen. */
  async run(path: string, cs: number): Promise<{ failure?: string; peakRss: number }> {
    const w = (this.worker ??= await this.start());
    let peakRss = process.memoryUsage().rss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 5);
    try {
      const failure = await new Promise<string | undefined>((res) => {
        const done = (f: string | undefined) => {
          clearTimeout(timer);
          w.off('message', onMessage);
          w.off('error', onError);
          res(f);
        };
        const onMessage = (m: { ok: boolean; error?: string }) => done(m.ok ? undefined : m.error);
        const onError = (e: Error) => {
          this.worker = undefined;
          done(`the worker died: ${e.message}`);
        };
        const timer = setTimeout(() => {
          this.worker = undefined;
          void w.terminate();
          done(`no answer within ${CASE_TIMEOUT_MS} ms (a hang)`);
        }, CASE_TIMEOUT_MS);
        w.on('message', onMessage);
        w.on('error', onError);
        w.postMessage({ path, cs });
      });
      return { failure, peakRss: Math.max(peakRss, process.memoryUsage().rss) };
    } finally {
      clearInterval(sampler);
    }
  }

  async stop(): Promise<void> {
    await this.worker?.terminate();
    this.worker = undefined;
  }
}

async function qemuMade(dir: string, name: string, opts: string, size: string, io: string[]): Promise<string> {
  const path = join(dir, name);
  expect((await qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, path, size)).code).toBe(0);
  if (io.length) expect((await qemuIo('-f', 'qcow2', ...io.flatMap((c) => ['-c', c]), path)).code).toBe(0);
  return path;
}

describe.skipIf(!qemu.available)('qcow2 with hostile metadata', () => {
  let root = '';
  const samples: Sample[] = [];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'blockemu-fuzz-'));
    const add = async (name: string, path: string) => samples.push(describeImage(name, join(path, '..'), new Uint8Array(await readFile(path))));
    const mk = async (sub: string) => {
      const d = join(root, sub);
      await mkdir(d);
      return d;
    };
    let d = await mk('q512');
    await add('qemu-img, 512 B clusters', await qemuMade(d, 'img.qcow2', 'cluster_size=512', '256K', ['write -P 0x11 0 4k', 'write -z 8k 2k', 'write -P 0x22 65000 3000']));
    d = await mk('q4k');
    await add('qemu-img, 4 KiB clusters, 1-bit refcounts', await qemuMade(d, 'img.qcow2', 'cluster_size=4096,refcount_bits=1', '1M', ['write -P 0x33 0 64k', 'write -P 0x44 600k 5k']));
    d = await mk('q64k-v2');
    await add('qemu-img, 64 KiB clusters, version 2', await qemuMade(d, 'img.qcow2', 'compat=0.10', '1M', ['write -P 0x55 0 100k', 'write -P 0x66 900k 10k']));
    d = await mk('qcomp');
    const raw = join(d, 'src.raw');
    await writeFile(raw, Uint8Array.from({ length: 256 << 10 }, (_, i) => (i >> 9) & 0xff));
    expect((await qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, join(d, 'img.qcow2'))).code).toBe(0);
    await add('qemu-img convert -c (compressed clusters)', join(d, 'img.qcow2'));
    d = await mk('qback');
    await qemuMade(d, 'base.qcow2', 'cluster_size=4096', '512K', ['write -P 0x77 0 512k']);
    expect((await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=1024', '-b', 'base.qcow2', '-F', 'qcow2', join(d, 'img.qcow2'))).code).toBe(0);
    expect((await qemuIo('-c', 'write -P 0x88 1000 5000', join(d, 'img.qcow2'))).code).toBe(0);
    await add('qemu-img overlay with a backing file', join(d, 'img.qcow2'));
    d = await mk('b1k');
    await createImage(join(d, 'img.qcow2'), { format: 'qcow2', size: 512 << 10, clusterSize: 1024, refcountBits: 8 });
    const b = (await openImage(join(d, 'img.qcow2'))) as Qcow2Image;
    await b.write(0, new Uint8Array(10_000).fill(0x99));
    await b.writeCompressed(64 << 10, new Uint8Array(1024).fill(0x12));
    await b.writeZeroes(20 << 10, 4096);
    await b.close();
    await add('blockemu, 1 KiB clusters, compressed cluster', join(d, 'img.qcow2'));
    d = await mk('b512');
    // 2.25 MiB written with 64-bit refcounts outgrows the first refcount table: the table is not where qemu-img puts it.
    await createImage(join(d, 'img.qcow2'), { format: 'qcow2', size: 2304 << 10, clusterSize: 512, refcountBits: 64 });
    const g = await openImage(join(d, 'img.qcow2'));
    // 16 KiB writes: a write covering a whole L2 table (32 KiB here) never finishes with 64-bit refcounts (see crash.test.ts).
    for (let off = 0; off < 2304 << 10; off += 16 << 10) await g.write(off, new Uint8Array(16 << 10).fill(0x3c));
    await g.close();
    await add('blockemu, 512 B clusters, grown refcount table', join(d, 'img.qcow2'));
    for (const s of samples) expect((await qemuImg('check', join(s.dir, 'img.qcow2'))).code, s.name).toBe(0);
  }, 60_000);

  afterAll(() => rm(root, { recursive: true, force: true }));

  it('fails only with BlockErrors, without hanging or huge allocations', async () => {
    const runner = new CaseRunner();
    const baseline = process.memoryUsage().rss;
    let worst = baseline;
    // Samples by index, so a counterexample prints short: [sample index, mutations].
    const arb = fc.nat({ max: samples.length - 1 }).chain((i) => fc.tuple(fc.constant(i), fc.array(mutation(samples[i]!), { minLength: 1, maxLength: 3 })));
    try {
      await fc.assert(
        fc.asyncProperty(arb, async ([i, ms]) => {
          const s = samples[i]!;
          const path = join(s.dir, 'case.qcow2');
          await writeFile(path, mutate(s, ms));
          const { failure, peakRss } = await runner.run(path, s.cs);
          worst = Math.max(worst, peakRss);
          const what = `${s.name}: ${ms.map((m) => m.what).join('; ')}`;
          expect(failure, what).toBeUndefined();
          expect(peakRss - baseline, `RSS grew by ${peakRss - baseline} bytes: ${what}`).toBeLessThan(RSS_GROWTH_LIMIT);
        }),
        // No shrinking: a hanging case costs the whole timeout per attempt, and the mutations are already few and named.
        // The examples are cases a run once found: a control byte in the backing format name (quoted raw in the message).
        { numRuns: RUNS, endOnFailure: true, examples: [[[4, [{ what: 'byte in extensions', at: 120, bytes: Uint8Array.from([5]) }]]]] },
      );
    } finally {
      await runner.stop();
    }
    expect(worst - baseline).toBeLessThan(RSS_GROWTH_LIMIT);
  }, Math.max(120_000, RUNS * 250));

  it('refuses the headers and extensions qemu-img refuses, with a readable message', async () => {
    const s = samples.find((x) => x.name.includes('4 KiB'))!;
    const path = join(s.dir, 'case.qcow2');
    /** An extension record at the start of the extension area, followed by the end marker. */
    const ext = (type: number, len: number) => (b: Uint8Array) => {
      b.set([...be32(type), ...be32(len), ...new Uint8Array(Math.ceil(len / 8) * 8 + 8).fill(0x41).map((v, i) => (i < len ? v : 0))], s.extStart);
    };
    const field = (at: number, bytes: Uint8Array) => (b: Uint8Array) => b.set(bytes, at);
    const cases: Array<[string, (b: Uint8Array) => void]> = [
      // QEMU allows a backing format name of at most 15 bytes (block/qcow2.c, qcow2_read_extensions).
      ['backing format extension of 100 bytes', ext(0xe2792aca, 100)],
      ['bitmaps extension of the wrong length', ext(0x23852875, 8)],
      ['encryption extension without encryption', ext(0x0537be77, 16)],
      ['end-of-extensions record with a length past the cluster', ext(0, 0xfff8)],
      ['compression type bit set with zlib', field(72, be64(1n << 3n))],
      ['unaligned snapshot table offset', field(64, be64(0x48n))],
      ['version 4', field(4, be32(4))],
      ['cluster_bits 8', field(20, be32(8))],
      ['cluster_bits 22', field(20, be32(22))],
      ['refcount_order 7', field(96, be32(7))],
      ['header_length 100', field(100, be32(100))],
      ['l1_size 0x7fffffff', field(36, be32(0x7fffffff))],
      ['refcount_table_clusters 0', field(56, be32(0))],
      ['refcount table offset unaligned', field(48, be64(0x1100n))],
      ['virtual size 2^63', field(24, be64(1n << 63n))],
    ];
    const wrong: string[] = [];
    for (const [what, apply] of cases) {
      const bytes = Uint8Array.from(s.bytes);
      apply(bytes);
      await writeFile(path, bytes);
      const info = await qemuImg('info', '-f', 'qcow2', path);
      // The case must be one QEMU refuses, or it proves nothing.
      expect(info.code, `qemu-img info accepted: ${what}`).toBe(1);
      const got = await openImage(path, { format: 'qcow2', readOnly: true }).then(
        async (img) => (await img.close(), 'opened'),
        (e: unknown) => e,
      );
      try {
        if (got === 'opened') throw new Error('opened');
        expectBlockError(got, 'open');
      } catch (e) {
        wrong.push(`${what}: qemu-img says ${JSON.stringify(info.stderr.trim())}, blockemu: ${(e as Error).message}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("refuses unknown incompatible features with qemu-img's message", async () => {
    const s = samples.find((x) => x.version === 3)!;
    const path = join(s.dir, 'case.qcow2');
    for (const bits of [[10], [5], [31], [63], [10, 40, 5]]) {
      const bytes = Uint8Array.from(s.bytes);
      bytes.set(be64(bits.reduce((v, b) => v | (1n << BigInt(b)), 0n)), 72);
      await writeFile(path, bytes);
      const info = await qemuImg('info', path);
      expect(info.code).toBe(1);
      const want = info.stderr.trim().replace(/^qemu-img: /, '');
      expect(want).toContain('Unsupported qcow2 feature(s): Unknown incompatible feature: ');
      // The example, spelled out so a change in how qemu-img is invoked cannot hide it.
      if (bits.length === 1 && bits[0] === 10) expect(want).toBe(`Could not open '${path}': Unsupported qcow2 feature(s): Unknown incompatible feature: 400`);
      for (const readOnly of [true, false]) {
        const err = await openImage(path, { format: 'qcow2', readOnly }).then(
          async (img) => (await img.close(), undefined),
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(BlockError);
        expect((err as BlockError).message).toBe(want);
      }
    }
  });
});
