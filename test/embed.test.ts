import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QmpError, startDaemon } from '../src/index.js';
import { qemu, qemuIo, withTempDir } from './helpers/qemu.js';

describe('startDaemon (embedding API)', () => {
  it('starts in-process with nodes, hands out clients, and cleans up on close (idempotently)', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'd.raw');
      await writeFile(path, new Uint8Array(1 << 20));
      const d = await startDaemon({ blockdevs: [{ driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: path } }] });
      const [a, b] = await Promise.all([d.client(), d.client()]);
      const out = await a.execute<string>('human-monitor-command', { 'command-line': 'qemu-io d0 "write -P 7 0 4k"' });
      expect(out).toMatch(/^wrote 4096\/4096/);
      await expect(b.execute('nosuch')).rejects.toBeInstanceOf(QmpError);
      await d.close();
      await d.close();
      await expect(a.execute('query-version')).rejects.toThrow();
    });
  });

  it.skipIf(!qemu.available)('serves exports over NBD (nbd option): qemu-io writes and reads through nbdUri', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'd.raw');
      await writeFile(path, new Uint8Array(1 << 20));
      const d = await startDaemon({
        blockdevs: [{ driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: path } }],
        nbd: { exports: [{ id: 'e0', 'node-name': 'd0', writable: true }] },
      });
      try {
        expect(d.nbdSocketPath).toBe(join(d.socketPath, '..', 'nbd.sock'));
        const r = await qemuIo('-f', 'raw', '-c', 'write -P 0x5a 4k 4k', '-c', 'read -P 0x5a 4k 4k', d.nbdUri('d0'));
        expect(r.stdout).toMatch(/read 4096\/4096 bytes at offset 4096/);
        const c = await d.client();
        expect(await c.execute('query-block-exports')).toEqual([{ id: 'e0', type: 'nbd', 'node-name': 'd0', 'shutting-down': false }]);
      } finally {
        await d.close();
      }
      await expect(startDaemon({ nbd: { exports: [{ id: 'e0', 'node-name': 'nosuch' }] } })).rejects.toThrow("Cannot find device='' nor node-name='nosuch'");
    });
  });

  it('a bad node spec fails the start and leaves nothing running', async () => {
    await expect(startDaemon({ blockdevs: [{ driver: 'file', 'node-name': 'f', filename: '/nonexistent/blockemu' }] })).rejects.toThrow(/No such file or directory/);
  });

  it('checks blockdevs against the BlockdevOptions schema with the words blockdev-add answers', async () => {
    const refused = async (spec: Record<string, unknown>) => {
      const viaStart = await startDaemon({ blockdevs: [spec as never] }).then(
        async (d) => (await d.close(), 'started'),
        (e: Error) => e,
      );
      const d = await startDaemon();
      try {
        const viaQmp = await (await d.client()).execute<unknown>('blockdev-add', spec).catch((e: QmpError) => e);
        return { viaStart, viaQmp };
      } finally {
        await d.close();
      }
    };
    for (const spec of [
      { driver: 'null-co', 'node-name': 'n0', sise: 1024 },
      { driver: 'null-co', 'node-name': 'n0', size: '1M' },
      { driver: 'nosuch', 'node-name': 'n0' },
      { driver: 'null-co' },
      { driver: 'raw', 'node-name': 'r0', file: { driver: 'null-co', 'read-zeros': 'yes' } },
    ]) {
      const { viaStart, viaQmp } = await refused(spec);
      expect(viaQmp).toBeInstanceOf(QmpError);
      // A schema refusal is blockdev-add's QmpError; the node's own (a missing node-name) its BlockError, with the same words.
      expect(viaStart).toBeInstanceOf(Error);
      expect({ message: (viaStart as Error).message, qmpClass: (viaStart as QmpError).qmpClass }).toEqual({ message: (viaQmp as QmpError).desc, qmpClass: (viaQmp as QmpError).qmpClass });
    }
  });
});

describe('query-qmp-schema of the whole daemon', () => {
  it('names every entity once, with every command the daemon serves', async () => {
    const d = await startDaemon({});
    try {
      const c = await d.client();
      const schema = await c.execute<Array<{ name: string; 'meta-type': string }>>('query-qmp-schema');
      const names = schema.map((e) => e.name);
      expect(names.length).toBe(new Set(names).size);
      const commands = (await c.execute<Array<{ name: string }>>('query-commands')).map((x) => x.name);
      // Commands appear under their own names; types under numbers, as QEMU masks them.
      for (const cmd of commands) expect(names).toContain(cmd);
      expect(names).toContain('JOB_STATUS_CHANGE');
      expect(names).toContain('BLOCK_JOB_COMPLETED');
    } finally {
      await d.close();
    }
  });
});
