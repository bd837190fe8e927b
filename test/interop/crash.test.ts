import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
// The child's own data generator: the parent recomputes what each logged operation wrote.
import { pattern, rng } from '../fixtures/crash-writer.mjs';
import { runUntilKilled } from '../helpers/kill-child.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

/**
 * Crash safety (the order documented at Qcow2Image.writeMetadata): a child
 * process writes to an image through blockemu and is killed with SIGKILL at a
 * random moment. Afterwards qemu-img check must find no corruption (leaks are
 * allowed), everything flushed before the kill must read back, and bytes
 * touched after the last completed flush must hold either their old value or
 * one of the values written since: nothing else.
 */
const CHILD = join(import.meta.dirname, '..', 'fixtures', 'crash-writer.mjs');
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 0x7fffffff));

interface Config {
  name: string;
  clusterSize: number;
  size: number;
  refcountBits: number;
  compat: '1.1' | '0.10';
  backing: 'none' | 'raw' | 'qcow2';
  kills: number;
  /** Bytes qemu-io writes (pattern 0x11) at the start of the disk before the first child runs. */
  prefill?: number;
  /** The refcount table must have moved by the end (it starts at one cluster and the file outgrows it). */
  expectTableGrowth?: boolean;
}

const CONFIGS: Config[] = [
  // 64-bit refcounts with 512 B clusters: one table cluster covers 2 MiB of file, so it has to grow.
  // qemu-io fills the file close to the 2 MiB the first refcount table can describe; the child's allocations cross it.
  { name: '512 B clusters, 64-bit refcounts', clusterSize: 512, size: 16 << 20, refcountBits: 64, compat: '1.1', backing: 'none', kills: 6, prefill: 1856 << 10, expectTableGrowth: true },
  { name: '512 B clusters over a qcow2 backing file', clusterSize: 512, size: 2 << 20, refcountBits: 16, compat: '1.1', backing: 'qcow2', kills: 5 },
  { name: '4 KiB clusters over a shorter raw backing file', clusterSize: 4096, size: 4 << 20, refcountBits: 16, compat: '1.1', backing: 'raw', kills: 5 },
  // Version 2 has no zero flag: zeroes are written, and a discard over a backing file is declined (it would expose the backing data).
  { name: '64 KiB clusters, version 2 over raw', clusterSize: 65536, size: 8 << 20, refcountBits: 16, compat: '0.10', backing: 'raw', kills: 4 },
  { name: '1 KiB clusters, 8-bit refcounts', clusterSize: 1024, size: 2 << 20, refcountBits: 8, compat: '1.1', backing: 'none', kills: 4 },
];

interface Op {
  n: number;
  kind: string;
  off: number;
  len: number;
  seed: number;
}

/** The child's log: the operations it started, and how many were covered by its last completed flush. */
function parseLog(text: string): { ops: Op[]; flushed: number } {
  const ops: Op[] = [];
  let flushed = 0;
  // A line without its newline was cut by the kill: the parent cannot rely on it (writeSync makes this rare).
  for (const line of text.split('\n').slice(0, -1)) {
    const f = line.split(' ');
    if (f[0] === 'F') flushed = Number(f[1]);
    else if (f[0] === 'O') ops.push({ n: Number(f[1]), kind: f[2]!, off: Number(f[3]), len: Number(f[4]), seed: Number(f[5]) });
  }
  ops.forEach((o, i) => expect(o.n, 'log out of order').toBe(i));
  return { ops, flushed };
}

/** What an operation leaves in guest bytes: (offset, bytes) pieces. */
function effects(op: Op, cfg: Config): Array<[number, Uint8Array]> {
  const cs = cfg.clusterSize;
  switch (op.kind) {
    case 'w':
    case 'c':
      return [[op.off, pattern(op.len, op.seed)]];
    case 'z':
    case 'Z':
      return [[op.off, new Uint8Array(op.len)]];
    case 'd': {
      // Only whole clusters are discarded; they read as zeroes in v3. Version 2 over a backing file declines the
      // discard, as QEMU does (the clusters would fall through to the backing file): nothing changes.
      const s = Math.ceil(op.off / cs) * cs;
      const e = Math.floor((op.off + op.len) / cs) * cs;
      if (s >= e || (cfg.compat !== '1.1' && cfg.backing !== 'none')) return [];
      return [[s, new Uint8Array(e - s)]];
    }
    default:
      throw new Error(`unknown op kind ${op.kind}`);
  }
}

/**
 * Checks `actual` against `durable` (the content after everything flushed)
 * where bytes touched by unflushed operations may also hold any value one of
 * those operations wrote. Returns a description of the first bad byte.
 */
function verify(actual: Uint8Array, durable: Uint8Array, unflushed: Array<[number, Uint8Array]>): string | undefined {
  const ok = new Uint8Array(actual.length);
  for (let i = 0; i < actual.length; i++) ok[i] = actual[i] === durable[i] ? 1 : 0;
  for (const [off, data] of unflushed) for (let i = 0; i < data.length; i++) if (actual[off + i] === data[i]) ok[off + i] = 1;
  const bad = ok.indexOf(0);
  if (bad < 0) return undefined;
  const touched = unflushed.some(([off, d]) => bad >= off && bad < off + d.length);
  return `guest byte ${bad} (0x${bad.toString(16)}) holds 0x${actual[bad]!.toString(16)}, expected 0x${durable[bad]!.toString(16)}${touched ? ' or a value written after the last flush' : ' (flushed before the kill)'}`;
}

/** Runs the child until `delayMs` after it has the image open, then SIGKILLs it. */
const runAndKill = (image: string, log: string, seed: number, delayMs: number) => runUntilKilled(CHILD, [image, log, String(seed)], delayMs);

/** qemu-img check: no corruption; leaks are the expected price of a crash. */
async function expectConsistent(image: string, when: string): Promise<void> {
  const check = await qemuImg('check', '-f', 'qcow2', image);
  const out = check.stdout + check.stderr;
  expect([0, 3], `qemu-img check ${when}:\n${out}`).toContain(check.code);
  expect(out, `qemu-img check ${when}`).not.toMatch(/ERROR|corrupt/);
}

async function readAll(image: string): Promise<Uint8Array> {
  const img = await openImage(image, { format: 'qcow2', readOnly: true });
  try {
    return await img.read(0, img.size());
  } finally {
    await img.close();
  }
}

async function reftableOffset(image: string): Promise<bigint> {
  const head = await readFile(image);
  return new DataView(head.buffer, head.byteOffset).getBigUint64(48);
}

/**
 * Sets up the image (made by qemu-img, as a user's would be) and its backing
 * file; returns the backing file's content (zeroes past its end) and the
 * image's initial guest content.
 */
async function createImages(dir: string, cfg: Config): Promise<{ image: string; base: Uint8Array; initial: Uint8Array }> {
  const image = join(dir, 'crash.qcow2');
  const content = new Uint8Array(cfg.size);
  const args = ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${cfg.clusterSize},refcount_bits=${cfg.refcountBits},compat=${cfg.compat}`];
  if (cfg.backing !== 'none') {
    // Shorter than the overlay: the tail reads as zeroes, not from the backing file.
    const baseLen = Math.floor((cfg.size * 3) / 4);
    const data = pattern(baseLen, 4242);
    content.set(data);
    await writeFile(join(dir, 'base.raw'), data);
    if (cfg.backing === 'qcow2') {
      const conv = await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', join(dir, 'base.raw'), join(dir, 'base.qcow2'));
      expect(conv.code, conv.stderr).toBe(0);
    }
    args.push('-b', `base.${cfg.backing}`, '-F', cfg.backing);
  }
  const made = await qemuImg(...args, image, String(cfg.size));
  expect(made.code, made.stderr).toBe(0);
  const initial = Uint8Array.from(content);
  if (cfg.prefill) {
    const io = await qemuIo('-f', 'qcow2', '-c', `write -q -P 0x11 0 ${cfg.prefill}`, image);
    expect(io.code, io.stderr).toBe(0);
    initial.fill(0x11, 0, cfg.prefill);
  }
  return { image, base: content, initial };
}

/**
 * The child's long writes cover whole L2 tables. With 64-bit refcounts an L2
 * table and a refcount block hold the same number of entries, so such a write
 * asks for a run of free clusters as long as one refcount block's range. Run
 * in a child process so a write that never returns can be stopped.
 */
describe.skipIf(!qemu.available)('whole-L2-table writes', () => {
  it('a 32 KiB write completes on 512 B clusters with 64-bit refcounts (one L2 table = one refcount block of entries)', async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, 'l2.qcow2');
      expect((await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512,refcount_bits=64', image, '1M')).code).toBe(0);
      const open = pathToFileURL(join(import.meta.dirname, '..', '..', 'dist', 'src', 'image', 'open.js')).href;
      const script = `const { openImage } = await import(${JSON.stringify(open)});
        const img = await openImage(${JSON.stringify(image)}, { format: 'qcow2' });
        await img.write(32768, new Uint8Array(32768).fill(0x5c));
        await img.close();`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
      clearTimeout(timer);
      expect({ code, stderr }, 'the write did not finish within 10 s (killed)').toEqual({ code: 0, stderr: '' });
      await expectConsistent(image, 'after a whole-L2 write');
      const io = await qemuIo('-f', 'qcow2', '-c', 'read -P 0x5c 32k 32k', '-c', 'read -P 0 0 32k', image);
      expect(io.stdout + io.stderr).not.toMatch(/Pattern verification failed|error/i);
    });
  }, 30_000);
});

describe.skipIf(!qemu.available)('qcow2 crash safety (SIGKILL during writes)', () => {
  it.each(CONFIGS)('$name', async (cfg) => {
    const r = rng(SEED ^ cfg.clusterSize ^ cfg.size);
    await withTempDir(async (dir) => {
      const { image, base, initial } = await createImages(dir, cfg);
      const firstTable = await reftableOffset(image);
      // The model: what every guest byte holds once everything issued so far is flushed.
      const model = Uint8Array.from(initial);
      let unflushedOps = 0;
      for (let kill = 0; kill < cfg.kills; kill++) {
        const when = `after kill ${kill + 1} (${cfg.name}, CRASH_SEED=${SEED})`;
        const log = join(dir, `log-${kill}`);
        await writeFile(log, '');
        // Mostly mid-run, sometimes right after open: both ends of the write path get hit.
        const delay = r(4) === 0 ? r(15) : 20 + r(230);
        await runAndKill(image, log, r(0x7fffffff), delay);

        const { ops, flushed } = parseLog(await readFile(log, 'utf8'));
        for (const op of ops.slice(0, flushed)) for (const [off, d] of effects(op, cfg)) model.set(d, off);
        const unflushed = ops.slice(flushed).flatMap((op) => effects(op, cfg));
        unflushedOps += ops.length - flushed;

        await expectConsistent(image, when);
        const actual = await readAll(image);
        expect(verify(actual, model, unflushed), when).toBeUndefined();
        // QEMU must read the same bytes as blockemu (whole image, backing chain included).
        await writeFile(join(dir, 'expect.raw'), actual);
        const cmp = await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', image, join(dir, 'expect.raw'));
        expect(cmp.code, `qemu-img compare ${when}: ${cmp.stdout}${cmp.stderr}`).toBe(0);
        // From here on the image's real content is the reference (each unflushed byte was one of its allowed values).
        model.set(actual);

        // The crashed image (leaks and all) must stay writable: allocate, overwrite, zero, then close cleanly.
        const img = await openImage(image, { format: 'qcow2' });
        for (let i = 0; i < 4; i++) {
          const op: Op = { n: i, kind: i === 3 ? 'z' : 'w', off: r(cfg.size - 1), len: 0, seed: r(0x7fffffff) };
          op.len = Math.min(cfg.size - op.off, 1 + r(3 * cfg.clusterSize));
          if (op.kind === 'w') await img.write(op.off, pattern(op.len, op.seed));
          else await img.writeZeroes(op.off, op.len);
          for (const [off, d] of effects(op, cfg)) model.set(d, off);
        }
        await img.close();
        await expectConsistent(image, `${when}, after reopening and writing`);
      }
      // With no kill pending, every byte is known exactly.
      expect(verify(await readAll(image), model, []), `final content (CRASH_SEED=${SEED})`).toBeUndefined();
      // Guard against a vacuous run: the kills must have landed while writes were in flight.
      expect(unflushedOps, 'operations caught unflushed by a kill').toBeGreaterThan(0);
      if (cfg.expectTableGrowth) expect(await reftableOffset(image)).not.toBe(firstTable);
    });
  }, 60_000);
});
