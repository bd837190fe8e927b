/**
 * The reopen engine from below the QMP layer: what QEMU's option
 * dictionaries do to values, the file node's descriptor following the
 * read-only state and auto-read-only (seen in /proc), and a failed
 * multi-node reopen leaving options, flags and links as they were.
 * test/qmp/reopen.test.ts holds the sessions compared with QEMU.
 */
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { absorb, flattenQdict, insertionOrder, putBack, qobjectEqual } from '../../src/blockdev/options.js';
import { blockdevReopen, reopenSetReadOnly } from '../../src/blockdev/reopen.js';
import { withTempDir } from '../helpers/qemu.js';

const ctx = (graph: BlockGraph) => ({ graph, order: insertionOrder });
const noDrain = () => undefined;

/** The access modes ('r' or 'rw') of this process's descriptors open on `path`. */
async function modes(path: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target !== path) continue;
    const flags = /flags:\s+(\d+)/.exec(await readFile(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
    out.push((parseInt(flags, 8) & 3) === 2 ? 'rw' : 'r');
  }
  return out;
}

describe.skipIf(process.platform !== 'linux')('reopen', () => {
  it("keeps QEMU's option dictionaries: flattened with empty containers kept, QemuOpts' text unequal to the typed value", () => {
    const flat = flattenQdict({ driver: 'raw', cache: {}, file: { driver: 'file', filename: 'x' }, list: [{ a: 1 }, 2], empty: [] });
    expect(flat).toEqual({ driver: 'raw', cache: {}, 'file.driver': 'file', 'file.filename': 'x', 'list.0.a': 1, 'list.1': 2, empty: [] });
    const opts = { 'aio-max-batch': 4, locking: 'off', 'x-flag': true, other: 1 };
    const taken = absorb(opts, ['aio-max-batch', 'locking', 'x-flag']);
    expect(opts).toEqual({ other: 1 });
    putBack(opts, taken);
    expect(opts).toEqual({ other: 1, 'aio-max-batch': '4', locking: 'off', 'x-flag': 'on' });
    expect(qobjectEqual(opts['aio-max-batch'], 4)).toBe(false);
    expect(qobjectEqual(opts.locking, 'off')).toBe(true);
    expect(qobjectEqual(undefined, undefined)).toBe(false);
    expect(qobjectEqual(null, null)).toBe(true);
  });

  it('a file node changes its descriptor with its read-only state; the old one is closed', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.raw');
      await writeFile(path, new Uint8Array(65536));
      const g = new BlockGraph();
      const raw = await openBlockdev(g, { driver: 'raw', 'node-name': 'a', file: { driver: 'file', 'node-name': 'af', filename: path } });
      expect(await modes(path)).toEqual(['rw']);
      await reopenSetReadOnly(ctx(g), raw, true);
      expect([raw.readOnly, g.find('af').readOnly]).toEqual([true, true]);
      expect(await modes(path)).toEqual(['r']);
      await expect(raw.write(0, new Uint8Array(512).fill(7))).rejects.toMatchObject({ code: 'READ_ONLY' });
      await reopenSetReadOnly(ctx(g), raw, false);
      expect(await modes(path)).toEqual(['rw']);
      await raw.write(0, new Uint8Array(512).fill(7));
      await raw.flush();
      expect((await readFile(path))[511]).toBe(7);
      await g.closeAll();
      expect(await modes(path)).toEqual([]);
    });
  });

  it('auto-read-only opens the file for writing only while a user writes', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.raw');
      await writeFile(path, new Uint8Array(65536));
      const g = new BlockGraph();
      await openBlockdev(g, { driver: 'file', 'node-name': 'af', filename: path, 'auto-read-only': true });
      expect([g.find('af').readOnly, await modes(path)]).toEqual([false, ['r']]);
      const raw = await openBlockdev(g, { driver: 'raw', 'node-name': 'a', file: 'af' });
      // A raw node takes write only for its own writers; a qcow2 would at once.
      expect(await modes(path)).toEqual(['r']);
      await blockdevReopen(ctx(g), [{ driver: 'file', 'node-name': 'af', filename: path }], noDrain);
      expect(await modes(path)).toEqual(['rw']);
      await blockdevReopen(ctx(g), [{ driver: 'file', 'node-name': 'af', filename: path, 'auto-read-only': true }], noDrain);
      expect(await modes(path)).toEqual(['r']);
      await g.delete('a');
      expect(raw.isClosed).toBe(true);
      await g.closeAll();
    });
  });

  it('a failed reopen of several nodes leaves options, flags, settings and links as they were', async () => {
    const g = new BlockGraph();
    const a = await openBlockdev(g, { driver: 'null-co', 'node-name': 'a', size: 4096 });
    const b = await openBlockdev(g, { driver: 'null-co', 'node-name': 'b', 'detect-zeroes': 'on' });
    const before = [a, b].map((n) => ({ options: n.options, settings: n.settings, ro: n.readOnly }));
    const entries = [
      { driver: 'null-co', 'node-name': 'a', size: 4096, 'read-only': true },
      { driver: 'null-co', 'node-name': 'b', 'read-only': true },
      { driver: 'null-co', 'node-name': 'b', size: 1 },
    ];
    await expect(blockdevReopen(ctx(g), entries, noDrain)).rejects.toThrow("Cannot change the option 'size'");
    expect([a, b].map((n) => ({ options: n.options, settings: n.settings, ro: n.readOnly }))).toEqual(before);
    await blockdevReopen(ctx(g), entries.slice(0, 2), noDrain);
    expect([a.readOnly, b.readOnly, b.settings.detectZeroes]).toEqual([true, true, 'off']);
    expect(b.options).toEqual({ driver: 'null-co', 'node-name': 'b', 'read-only': true });
    await g.closeAll();
  });
});
