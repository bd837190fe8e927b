import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import { rng } from '../fixtures/crash-writer.mjs';
import { runUntilKilled } from '../helpers/kill-child.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

/**
 * Crash safety of resizing: a child writes to and resizes (up, down,
 * preallocating) a qcow2 image through blockemu and is killed with SIGKILL
 * at a random moment. Afterwards qemu-img check must find no corruption
 * (leaked clusters are allowed), the header's size must be the old or the
 * new size of a resize under way (else the last one done: the size is
 * written last), and the image must take more resizes and writes cleanly.
 */
const CHILD = join(import.meta.dirname, '..', 'fixtures', 'resize-crash-writer.mjs');
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 0x7fffffff));

interface Config {
  name: string;
  opts: string;
  size: number;
  maxSize: number;
  backing: boolean;
  kills: number;
}

const CONFIGS: Config[] = [
  // The L1 table outgrows its cluster (2 MiB of guest data) and moves, refcount blocks come and go.
  { name: '512 B clusters', opts: 'cluster_size=512', size: 1 << 20, maxSize: 12 << 20, backing: false, kills: 6 },
  // 64 refcounts a block: L1 tables past 64 clusters (128 MiB) are placed after the last used cluster.
  { name: '512 B clusters, 64-bit refcounts', opts: 'cluster_size=512,refcount_bits=64', size: 4 << 20, maxSize: 300 << 20, backing: false, kills: 5 },
  // Growing over a longer backing file writes zero clusters and zeroes.
  { name: '4 KiB clusters over a longer backing file', opts: 'cluster_size=4096', size: 1 << 20, maxSize: 16 << 20, backing: true, kills: 5 },
];

function headerSize(head: Buffer): number {
  return Number(new DataView(head.buffer, head.byteOffset).getBigUint64(24));
}

/** The sizes the header may hold after the kill, from the child's log. */
function allowedSizes(log: string, before: number): number[] {
  let allowed = [before];
  for (const line of log.split('\n').slice(0, -1)) {
    const f = line.split(' ');
    if (f[0] === 'R') allowed = [Number(f[1]), Number(f[2])];
    else if (f[0] === 'D') allowed = [Number(f[1])];
  }
  return allowed;
}

async function expectConsistent(image: string, when: string): Promise<void> {
  const check = await qemuImg('check', '-f', 'qcow2', image);
  const out = check.stdout + check.stderr;
  expect([0, 3], `qemu-img check ${when}:\n${out}`).toContain(check.code);
  expect(out, `qemu-img check ${when}`).not.toMatch(/ERROR|corrupt/);
}

const runAndKill = (args: string[], delayMs: number) => runUntilKilled(CHILD, args, delayMs);

describe.skipIf(!qemu.available)('qcow2 resize crash safety (SIGKILL while resizing)', () => {
  it.each(CONFIGS)('$name', async (cfg) => {
    const r = rng(SEED ^ cfg.size ^ cfg.maxSize);
    await withTempDir(async (dir) => {
      const image = join(dir, 'r.qcow2');
      const create = ['create', '-q', '-f', 'qcow2', '-o', cfg.opts];
      if (cfg.backing) {
        expect((await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), String(cfg.maxSize))).code).toBe(0);
        expect((await qemuIo('-f', 'qcow2', '-c', `write -q -P 0x66 0 ${cfg.maxSize}`, join(dir, 'base.qcow2'))).code).toBe(0);
        create.push('-b', 'base.qcow2', '-F', 'qcow2');
      }
      expect((await qemuImg(...create, image, String(cfg.size))).code).toBe(0);
      let resizes = 0;
      for (let kill = 0; kill < cfg.kills; kill++) {
        const when = `after kill ${kill + 1} (${cfg.name}, CRASH_SEED=${SEED})`;
        const log = join(dir, `log-${kill}`);
        await writeFile(log, '');
        const before = headerSize(await readFile(image));
        await runAndKill([image, log, String(r(0x7fffffff)), String(cfg.maxSize)], r(4) === 0 ? r(15) : 20 + r(300));
        const text = await readFile(log, 'utf8');
        resizes += text.split('\n').filter((l) => l.startsWith('R ')).length;
        expect(allowedSizes(text, before), `virtual size ${when}`).toContain(headerSize(await readFile(image)));
        await expectConsistent(image, when);
        // QEMU and blockemu read the crashed image alike.
        const img = await openImage(image, { format: 'qcow2', readOnly: true });
        await writeFile(join(dir, 'expect.raw'), await img.read(0, img.size()));
        await img.close();
        const cmp = await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', image, join(dir, 'expect.raw'));
        expect(cmp.code, `qemu-img compare ${when}: ${cmp.stdout}${cmp.stderr}`).toBe(0);
        // And the image goes on: a resize and a write after reopening, closed cleanly.
        const again = await openImage(image, { format: 'qcow2' });
        await again.resize(again.size() + 65536);
        await again.write(again.size() - 512, new Uint8Array(512).fill(9));
        await again.close();
        await expectConsistent(image, `${when}, after reopening, resizing and writing`);
      }
      expect(resizes, 'resizes started before the kills').toBeGreaterThan(0);
    });
  }, 120_000);
});
