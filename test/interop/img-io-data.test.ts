/**
 * Data bugs that QEMU's iotests found in `blockemu img`/`blockemu io`, each
 * as the smallest command sequence that showed it: the sequence runs once
 * with blockemu's tools (in b/) and once with qemu-img/qemu-io 7.2 (in q/),
 * and what the image then reads (`qemu-io read -P`), maps (`qemu-img map`)
 * and, where the iotest looked at it, how the file is laid out must match.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { qemu, run, runBlockemu } from '../helpers/qemu.js';
import { scratch } from './img-oracle.js';

type Tools = { img: (...a: string[]) => Promise<string>; io: (f: string, ...c: string[]) => Promise<string> };

function tools(cwd: string, ours: boolean): Tools {
  const go = async (tool: 'img' | 'io', args: string[]) => {
    const r = ours ? await runBlockemu([tool, ...args], { cwd }) : await run(`qemu-${tool}`, args, { cwd });
    if (r.code !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout + r.stderr;
  };
  return { img: (...a) => go('img', a), io: (f, ...c) => go('io', [...c.flatMap((x) => ['-c', x]), f]) };
}

/** Drops the timing line qemu-io prints after each request. */
const untimed = (s: string) => s.replace(/^.*ops\/sec.*\n/gm, '');

describe.skipIf(!qemu.available)('data bugs found by the iotests (blockemu img/io vs qemu-img/qemu-io)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeEach(async () => {
    s = await scratch();
  });
  afterEach(() => s.done());

  /** Runs `steps` with both tool sets; returns what each produced. */
  async function both(steps: (t: Tools) => Promise<string>): Promise<{ b: string; q: string }> {
    return { b: untimed(await steps(tools(s.b, true))), q: untimed(await steps(tools(s.q, false))) };
  }

  it('rebase of an image with no backing file onto one: its unallocated clusters keep reading zeroes (iotest 252)', async () => {
    const r = await both(async ({ img, io }) => {
      await img('create', '-q', '-f', 'qcow2', 't.qcow2', '384k');
      await img('create', '-q', '-f', 'qcow2', 'n.qcow2', '384k');
      await io('t.qcow2', 'write -P 0x22 0 128k', 'write -P 0x11 128k 128k');
      await io('n.qcow2', 'write -P 0x11 0 64k', 'write -P 0x11 128k 64k', 'write -P 0x11 256k 64k');
      await img('rebase', '-b', 'n.qcow2', '-F', 'qcow2', 't.qcow2');
      return (await io('t.qcow2', 'read -P 0x22 0 128k', 'read -P 0x11 128k 128k', 'read -P 0 256k 128k')) + (await img('map', '--output=json', 't.qcow2'));
    });
    expect(r.b).not.toContain('Pattern verification failed');
    expect(r.b).toBe(r.q);
  });

  it('discard on a version 2 image with a backing file changes nothing (iotest 290)', async () => {
    const r = await both(async ({ img, io }) => {
      await img('create', '-q', '-f', 'qcow2', 'base.qcow2', '128k');
      await io('base.qcow2', 'write -P 0xff 0 128k');
      await img('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', '-b', 'base.qcow2', '-F', 'qcow2', 't.qcow2');
      await io('t.qcow2', 'write -P 1 0 128k');
      await io('t.qcow2', 'discard 0 128k');
      return (await io('t.qcow2', 'read -P 1 0 128k')) + (await img('map', '--output=json', 't.qcow2'));
    });
    expect(r.b).not.toContain('Pattern verification failed');
    expect(r.b).toBe(r.q);
  });

  it('a write into preallocated zero clusters reuses them, zeroes around the data (iotest 066)', async () => {
    const r = await both(async ({ img, io }) => {
      await img('create', '-q', '-f', 'qcow2', 't.qcow2', '64M');
      await io('t.qcow2', 'write -P 42 1M 256k', 'write -z 1M 256k');
      await io('t.qcow2', `write -P 23 ${1024 * 1024 + 32 * 1024} 192k`);
      const read = await io('t.qcow2', 'read -P 0 1M 32k', `read -P 23 ${1024 * 1024 + 32 * 1024} 192k`, `read -P 0 ${1024 * 1024 + 224 * 1024} 32k`);
      return read + (await img('map', '--output=json', 't.qcow2')) + (await img('check', 't.qcow2'));
    });
    expect(r.b).toBe(r.q);
  });

  it("a write reaching a range with no refcount block yet lays the file out as QEMU does (iotest 313's end offset)", async () => {
    const size = ((4096 * 8) / 64 - 2) * 4 - 2;
    const r = await both(async ({ img, io }) => {
      await img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096,refcount_bits=64', 'base.qcow2', `${size * 4096}`);
      await io('base.qcow2', `write -P 1 0 ${size * 4096}`);
      await img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096,refcount_bits=64', '-b', 'base.qcow2', '-F', 'qcow2', 't.qcow2');
      await io('t.qcow2', `write -z 0 ${size * 4096}`);
      await img('commit', 't.qcow2');
      return img('check', 'base.qcow2');
    });
    expect(r.b).toBe(r.q);
    expect(r.b).toContain('Image end offset: 8396800');
  });

  it('a long write across a new refcount block gives the same file, byte for byte', async () => {
    const size = 8347648;
    for (const [d, ours] of [[s.b, true], [s.q, false]] as const) {
      const t = tools(d, ours);
      // Both images created by qemu-img: only the writes differ.
      await tools(d, false).img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096,refcount_bits=64', 'y.qcow2', `${size}`);
      await t.io('y.qcow2', `write -P 1 0 ${size}`);
    }
    const [b, q] = await Promise.all([readFile(join(s.b, 'y.qcow2')), readFile(join(s.q, 'y.qcow2'))]);
    expect(b.equals(q)).toBe(true);
  });
});
