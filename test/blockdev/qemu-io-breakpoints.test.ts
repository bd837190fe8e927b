/**
 * qemu-io's blkdebug commands (break, remove_break, resume, wait_break) on
 * a node graph, through the shared interpreter as the tool and the monitor
 * run it: a request announcing a breakpoint's event is held (an aio_write
 * stays in flight) until resumed; without a blkdebug node each command
 * answers ENOTSUP in qemu-io's words.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockBackend } from '../../src/blockdev/block-backend.js';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { backendTarget, type OutputChunk, QemuIoSession, runQemuIoCommand } from '../../src/blockdev/qemu-io/index.js';
import { createImage } from '../../src/image/open.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_WRITE } from '../../src/image/perm.js';
import { withTempDir } from '../helpers/qemu.js';

async function withGraph(blkdebug: boolean, fn: (g: { graph: BlockGraph; blk: BlockBackend; printed: string[] }) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, 'img.qcow2');
    await createImage(path, { format: 'qcow2', size: 1 << 20 });
    const graph = new BlockGraph();
    const printed: string[] = [];
    graph.onEvent = (e) => {
      if (e.kind === 'debug-print') printed.push(e.text);
    };
    const file = { driver: 'file', filename: path };
    const node = await openBlockdev(graph, { driver: 'qcow2', file: blkdebug ? { driver: 'blkdebug', image: file } : file }, false);
    const blk = new BlockBackend({ perm: PERM_CONSISTENT_READ | PERM_WRITE, shared: PERM_ALL });
    await blk.insert(node);
    try {
      await fn({ graph, blk, printed });
    } finally {
      await blk.remove();
      await graph.closeAll();
    }
  });
}

const text = (chunks: readonly OutputChunk[]) => chunks.map((c) => c.text).join('').replace(/^\d.*ops\/sec\)\n/gm, '');

describe('qemu-io breakpoints', () => {
  it('holds an aio_write at write_aio until resume, the other requests going on', async () => {
    await withGraph(true, async ({ blk, printed }) => {
      const done: string[] = [];
      const s = new QemuIoSession(backendTarget(blk, blk.node!), {}, (c) => done.push(text(c)));
      expect((await s.run('break write_aio A')).text).toBe('');
      expect((await s.run('aio_write -P 1 0 4k')).failed).toBe(false);
      await s.run('wait_break A');
      expect(printed).toEqual(["blkdebug: Suspended request 'A'\n"]);
      // A read elsewhere completes while the write is held.
      expect((await s.run('read -P 0 64k 4k')).stdout).toMatch(/^read 4096\/4096 bytes at offset 65536/);
      expect(done).toEqual([]);
      expect((await s.run('resume A')).text).toBe('');
      await s.drain();
      expect(printed).toEqual(["blkdebug: Suspended request 'A'\n", "blkdebug: Resuming request 'A'\n"]);
      expect(done).toEqual(['wrote 4096/4096 bytes at offset 0\n']);
      expect((await s.run('read -P 1 0 4k')).stdout).toMatch(/^read 4096\/4096/);
      // A breakpoint fires once: the next write goes through.
      expect((await s.run('write 8k 4k')).stdout).toMatch(/^wrote 4096\/4096/);
    });
  });

  it('remove_break resumes every request of the tag and removes breakpoints not yet hit; unknown tags and events answer ENOENT', async () => {
    await withGraph(true, async ({ blk, printed }) => {
      const s = new QemuIoSession(backendTarget(blk, blk.node!), {}, () => undefined);
      await s.run('break write_aio T');
      await s.run('aio_write 0 4k');
      await s.run('wait_break T');
      // QEMU's remove_break resumes the request, then still answers ENOENT: the breakpoint itself went when it fired.
      expect((await s.run('remove_break T')).stdout).toBe('Could not remove breakpoint T: No such file or directory\n');
      await s.drain();
      expect(printed).toEqual(["blkdebug: Suspended request 'T'\n", "blkdebug: Resuming request 'T'\n"]);
      expect((await s.run('remove_break T')).stdout).toBe('Could not remove breakpoint T: No such file or directory\n');
      expect((await s.run('resume T')).stdout).toBe('Could not resume request: No such file or directory\n');
      await s.run('break write_aio U');
      expect((await s.run('remove_break U')).text).toBe('');
      expect((await s.run('write 0 4k')).stdout).toMatch(/^wrote 4096\/4096/);
      const bad = await s.run('break no_such_event T');
      expect({ out: bad.stdout, failed: bad.failed }).toEqual({ out: 'Could not set breakpoint: No such file or directory\n', failed: true });
    });
  });

  it('answers ENOTSUP without a blkdebug node in the chain', async () => {
    await withGraph(false, async ({ blk }) => {
      const t = backendTarget(blk, blk.node!);
      expect((await runQemuIoCommand('break write_aio A', t)).stdout).toBe('Could not set breakpoint: Operation not supported\n');
      expect((await runQemuIoCommand('remove_break A', t)).stdout).toBe('Could not remove breakpoint A: Operation not supported\n');
      expect((await runQemuIoCommand('resume A', t)).stdout).toBe('Could not resume request: Operation not supported\n');
      expect((await runQemuIoCommand('wait_break A', t)).text).toBe('');
    });
  });

  it('a monitor command returns while its request is held; the completion reports late', async () => {
    await withGraph(true, async ({ blk }) => {
      const t = backendTarget(blk, blk.node!);
      const late: string[] = [];
      let reported!: () => void;
      const completion = new Promise<void>((res) => (reported = res));
      await runQemuIoCommand('break write_aio A', t);
      const r = await runQemuIoCommand('aio_write -P 5 0 4k', t, {
        late: (c) => {
          late.push(text(c));
          reported();
        },
      });
      expect(r.text).toBe('');
      expect(late).toEqual([]);
      await runQemuIoCommand('resume A', t);
      await completion;
      expect(late).toEqual(['wrote 4096/4096 bytes at offset 0\n']);
      expect((await runQemuIoCommand('read -P 5 0 4k', t)).stdout).toMatch(/^read 4096\/4096/);
    });
  });
});
