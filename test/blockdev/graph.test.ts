import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { withTempDir } from '../helpers/qemu.js';

async function image(dir: string, name: string, bytes: number, fill = 0): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, new Uint8Array(bytes).fill(fill));
  return p;
}

describe('block graph', () => {
  it('opens raw over file, reads and writes through, and windows with offset/size', async () => {
    await withTempDir(async (dir) => {
      const path = await image(dir, 'a.raw', 1 << 20, 0x11);
      const g = new BlockGraph();
      await openBlockdev(g, { driver: 'file', 'node-name': 'a-file', filename: path });
      const raw = await openBlockdev(g, { driver: 'raw', 'node-name': 'a', file: 'a-file', offset: 4096, size: 8192 });
      expect(raw.size()).toBe(8192);
      await raw.write(0, new Uint8Array(512).fill(0x22));
      const file = g.find('a-file');
      expect((await file.read(4096, 512)).every((b) => b === 0x22)).toBe(true);
      expect((await file.read(0, 4096)).every((b) => b === 0x11)).toBe(true);
      await expect(raw.read(8000, 512)).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
      await g.closeAll();
    });
  });

  it('validates and generates node names as QEMU does', async () => {
    const g = new BlockGraph();
    await openBlockdev(g, { driver: 'null-co', 'node-name': 'n1' });
    await expect(openBlockdev(g, { driver: 'null-co', 'node-name': 'n1' })).rejects.toThrow("Duplicate nodes with node-name='n1'");
    await expect(openBlockdev(g, { driver: 'null-co', 'node-name': '1abc' })).rejects.toThrow("Invalid node-name: '1abc'");
    await expect(openBlockdev(g, { driver: 'null-co', 'node-name': 'a'.repeat(32) })).rejects.toThrow('Node name too long');
    const anon = await openBlockdev(g, { driver: 'null-co' });
    expect(anon.nodeName).toMatch(/^#block\d+$/);
    await expect(openBlockdev(g, { driver: 'vmdk' })).rejects.toThrow(/Driver 'vmdk' is not supported/);
    await g.closeAll();
  });

  it('blockdev-del refuses nodes in use or not owned by the monitor, and takes inline children along', async () => {
    await withTempDir(async (dir) => {
      const path = await image(dir, 'a.raw', 65536);
      const g = new BlockGraph();
      await openBlockdev(g, { driver: 'file', 'node-name': 'a-file', filename: path });
      await openBlockdev(g, { driver: 'raw', 'node-name': 'a', file: 'a-file' });
      await openBlockdev(g, { driver: 'raw', 'node-name': 'b', file: { driver: 'file', 'node-name': 'b-file', filename: path } });
      await expect(g.delete('nope')).rejects.toThrow("Failed to find node with node-name='nope'");
      await expect(g.delete('a-file')).rejects.toThrow('Block device a-file is in use');
      await expect(g.delete('b-file')).rejects.toThrow('Node b-file is not owned by the monitor');
      await g.delete('b');
      expect(g.get('b-file')).toBeUndefined();
      await g.delete('a');
      expect(g.get('a-file')).toBeDefined();
      await g.delete('a-file');
      expect(g.list()).toEqual([]);
    });
  });

  it('closeAll closes every node, even one still referenced by something that never let go', async () => {
    await withTempDir(async (dir) => {
      const path = await image(dir, 'a.raw', 65536);
      const g = new BlockGraph();
      const raw = await openBlockdev(g, { driver: 'raw', 'node-name': 'a', file: { driver: 'file', 'node-name': 'a-file', filename: path } });
      raw.ref(); // a user that is gone without dropping its reference
      await g.closeAll();
      expect(g.list()).toEqual([]);
      expect(raw.isClosed).toBe(true);
      expect(raw.children().every((c) => c.isClosed)).toBe(true);
    });
  });

  it('a failed blockdev-add leaves nothing behind', async () => {
    await withTempDir(async (dir) => {
      const path = await image(dir, 'a.raw', 65536);
      const g = new BlockGraph();
      await expect(openBlockdev(g, { driver: 'raw', 'node-name': 'r', offset: 1 << 20, file: { driver: 'file', 'node-name': 'f', filename: path } })).rejects.toThrow(
        'Offset (1048576) cannot be greater than size of the containing file (65536)',
      );
      expect(g.list()).toEqual([]);
      await expect(openBlockdev(g, { driver: 'raw', 'node-name': 'r', file: 'missing' })).rejects.toThrow("Cannot find device='missing' nor node-name='missing'");
      await expect(openBlockdev(g, { driver: 'file', 'node-name': 'f', filename: join(dir, 'nope') })).rejects.toThrow(/Could not open '.*nope': No such file or directory/);
      expect(g.list()).toEqual([]);
    });
  });
});

describe('blkdebug', () => {
  const setup = async (dir: string, rules: Record<string, unknown>) => {
    const path = await image(dir, 's.raw', 1 << 20, 0x33);
    const g = new BlockGraph();
    const raw = await openBlockdev(g, { driver: 'raw', 'node-name': 'src', file: { driver: 'blkdebug', image: { driver: 'file', filename: path }, ...rules } });
    return { g, raw };
  };

  it('fails the read armed by read_aio once, then reads again', async () => {
    await withTempDir(async (dir) => {
      const { g, raw } = await setup(dir, { 'inject-error': [{ event: 'read_aio', errno: 5, once: true }] });
      await expect(raw.read(0, 512)).rejects.toMatchObject({ errno: 'EIO', message: 'Input/output error' });
      expect((await raw.read(0, 512))[0]).toBe(0x33);
      await g.closeAll();
    });
  });

  it('a persistent ENOSPC on writes; default iotypes also fail later reads until another event replaces the rules', async () => {
    await withTempDir(async (dir) => {
      const { g, raw } = await setup(dir, { 'inject-error': [{ event: 'write_aio', errno: 28 }] });
      expect((await raw.read(0, 512))[0]).toBe(0x33); // not armed yet
      await expect(raw.write(0, new Uint8Array(512))).rejects.toMatchObject({ errno: 'ENOSPC', message: 'No space left on device' });
      await expect(raw.write(0, new Uint8Array(512))).rejects.toMatchObject({ errno: 'ENOSPC' });
      await expect(raw.read(0, 512)).rejects.toMatchObject({ errno: 'ENOSPC' });
      await g.closeAll();
    });
  });

  it('sector, iotype and the state machine', async () => {
    await withTempDir(async (dir) => {
      const { g, raw } = await setup(dir, {
        'inject-error': [{ event: 'read_aio', state: 2, sector: 8, iotype: 'read' }],
        'set-state': [{ event: 'write_aio', state: 1, new_state: 2 }],
      });
      expect((await raw.read(4096, 512))[0]).toBe(0x33); // state 1: rule not armed
      await raw.write(0, new Uint8Array(512).fill(1)); // moves to state 2
      await expect(raw.read(4096, 512)).rejects.toMatchObject({ errno: 'EIO' }); // covers sector 8
      expect((await raw.read(0, 512))[0]).toBe(1); // does not cover sector 8
      await g.closeAll();
    });
  });

  it('event none arms rules from the start; a flush with nothing written reaches no rule (write_gen)', async () => {
    await withTempDir(async (dir) => {
      const { g, raw } = await setup(dir, { 'inject-error': [{ event: 'none', iotype: 'flush', errno: 5 }] });
      // As QEMU's bdrv_co_flush: nothing written since the last flush, so blkdebug's flush is skipped.
      await raw.flush();
      await raw.write(0, new Uint8Array(1).fill(0x33));
      await expect(raw.flush()).rejects.toMatchObject({ errno: 'EIO' });
      expect((await raw.read(0, 1))[0]).toBe(0x33);
      await g.closeAll();
    });
  });
});

describe('generic node options', () => {
  const rules = (iotype: string) => ({ 'inject-error': [{ event: 'none', iotype, errno: 5 }] });
  const open = async (dir: string, opts: Record<string, unknown>, iotype: string) => {
    const path = await image(dir, 'g.raw', 65536);
    const g = new BlockGraph();
    const node = await openBlockdev(g, { driver: 'raw', 'node-name': 'n', ...opts, file: { driver: 'blkdebug', image: { driver: 'file', filename: path }, ...rules(iotype) } });
    return { g, node };
  };

  it('discard=ignore (the default) makes discards no-ops; discard=unmap passes them down (inherited by inline children)', async () => {
    await withTempDir(async (dir) => {
      const a = await open(dir, {}, 'discard');
      await a.node.discard(0, 4096);
      await a.g.closeAll();
      const b = await open(dir, { discard: 'unmap' }, 'discard');
      await expect(b.node.discard(0, 4096)).rejects.toMatchObject({ errno: 'EIO' });
      await b.g.closeAll();
    });
  });

  it('detect-zeroes turns all-zero writes into zero writes; unmap needs discard=unmap', async () => {
    await withTempDir(async (dir) => {
      const a = await open(dir, { 'detect-zeroes': 'on' }, 'write-zeroes');
      await a.node.write(0, new Uint8Array(512).fill(1));
      await expect(a.node.write(0, new Uint8Array(512))).rejects.toMatchObject({ errno: 'EIO' });
      await a.g.closeAll();
      const g = new BlockGraph();
      await expect(openBlockdev(g, { driver: 'null-co', 'detect-zeroes': 'unmap' })).rejects.toThrow(
        'setting detect-zeroes to unmap is not allowed without setting discard operation to unmap',
      );
    });
  });

  it('cache.no-flush (inherited by inline children) keeps flushes from the disk', async () => {
    await withTempDir(async (dir) => {
      const a = await open(dir, { cache: { 'no-flush': true } }, 'flush');
      await a.node.write(0, new Uint8Array(512));
      await a.node.flush();
      await a.g.closeAll();
      const b = await open(dir, {}, 'flush');
      await b.node.write(0, new Uint8Array(512));
      await expect(b.node.flush()).rejects.toMatchObject({ errno: 'EIO' });
      await b.g.closeAll();
    });
  });
});

describe('qcow2 nodes', () => {
  it('read and write through the file child; qemu-img finds the image clean and with the data', async () => {
    const { qemu, qemuImg, qemuIo } = await import('../helpers/qemu.js');
    if (!qemu.available) return;
    await withTempDir(async (dir) => {
      const path = join(dir, 'q.qcow2');
      await qemuImg('create', '-f', 'qcow2', path, '4M');
      await qemuIo('-c', 'write -P 0x11 0 64k', path);
      const g = new BlockGraph();
      const q = await openBlockdev(g, { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', 'node-name': 'q-file', filename: path } });
      expect(q.size()).toBe(4 << 20);
      expect((await q.read(0, 512))[0]).toBe(0x11);
      await q.write(1 << 20, new Uint8Array(65536).fill(0x22));
      const info = await q.imageInfo();
      expect(info).toMatchObject({ format: 'qcow2', virtualSize: 4 << 20, clusterSize: 65536, filename: path });
      await g.closeAll();
      expect((await qemuImg('check', path)).code).toBe(0);
      const io = await qemuIo('-c', 'read -P 0x11 0 64k', '-c', 'read -P 0x22 1M 64k', path);
      expect(io.stdout).not.toContain('Pattern verification failed');
    });
  });

  it('a write error from blkdebug under qcow2 fails the guest write; the image stays consistent', async () => {
    const { qemu, qemuImg } = await import('../helpers/qemu.js');
    if (!qemu.available) return;
    await withTempDir(async (dir) => {
      const path = join(dir, 'q.qcow2');
      await qemuImg('create', '-f', 'qcow2', path, '4M');
      const g = new BlockGraph();
      const q = await openBlockdev(g, {
        driver: 'qcow2',
        'node-name': 'q',
        file: { driver: 'blkdebug', image: { driver: 'file', filename: path }, 'inject-error': [{ event: 'write_aio', errno: 28, iotype: 'write', once: true }] },
      });
      await expect(q.write(0, new Uint8Array(65536).fill(1))).rejects.toMatchObject({ errno: 'ENOSPC' });
      await q.write(0, new Uint8Array(65536).fill(2));
      expect((await q.read(0, 1))[0]).toBe(2);
      await g.closeAll();
      const check = await qemuImg('check', path);
      // Leaks are allowed after a failed write; corruption is not.
      expect([0, 3]).toContain(check.code);
    });
  });

  it('refuses a file that is not qcow2 with QEMU\'s message', async () => {
    await withTempDir(async (dir) => {
      const path = await image(dir, 'x.raw', 65536);
      const g = new BlockGraph();
      await expect(openBlockdev(g, { driver: 'qcow2', file: { driver: 'file', filename: path } })).rejects.toThrow(/^Image is not in qcow2 format$/);
      expect(g.list()).toEqual([]);
    });
  });
});
