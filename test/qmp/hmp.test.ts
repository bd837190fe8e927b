import { ObjectRegistry } from '../../src/objects/registry.js';
import { BlockExports } from '../../src/export/exports.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { JobManager } from '../../src/jobs/manager.js';
import { jobEventListener } from '../../src/qmp/commands/jobs.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { addHmpCommands } from '../../src/qmp/commands/hmp.js';
import { parseHmpArgs } from '../../src/qmp/hmp/args.js';
import type { QmpContext } from '../../src/qmp/context.js';
import { CommandTable, dispatch } from '../../src/qmp/dispatch.js';
import { withTempDir } from '../helpers/qemu.js';

describe('human-monitor-command qemu-io', () => {
  it('parses HMP arguments by args_type: quoted words with escapes, flags, sizes, and the monitor\'s errors', () => {
    const qemuIo = 'qdev:-d,device:B,command:s';
    expect(parseHmpArgs('qemu-io', qemuIo, '  drive0 "write -P 0x5a 0 64k"')).toEqual({ device: 'drive0', command: 'write -P 0x5a 0 64k' });
    expect(parseHmpArgs('qemu-io', qemuIo, '-d a "b \\"c\\" \\\\"')).toEqual({ qdev: true, device: 'a', command: 'b "c" \\' });
    expect(() => parseHmpArgs('qemu-io', qemuIo, 'a "open')).toThrow('unterminated string');
    expect(() => parseHmpArgs('qemu-io', qemuIo, '')).toThrow('qemu-io: block device name expected');
    expect(() => parseHmpArgs('block', 'nodes:-n,verbose:-v,device:B?', '-x')).toThrow('block: unsupported option -x');
    expect(parseHmpArgs('block', 'nodes:-n,verbose:-v,device:B?', '-v d0')).toEqual({ verbose: true, device: 'd0' });
    expect(() => parseHmpArgs('block', 'nodes:-n,verbose:-v,device:B?', 'a b')).toThrow('block: extraneous characters at the end of line');
    expect(parseHmpArgs('block_resize', 'device:B,size:o', 'd 128')).toEqual({ device: 'd', size: 128 << 20 });
    expect(parseHmpArgs('block_resize', 'device:B,size:o', 'd 64k')).toEqual({ device: 'd', size: 65536 });
  });

  it('runs qemu-io commands on a node, with the monitor\'s CRLF output', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.raw');
      await writeFile(path, new Uint8Array(1 << 20));
      const graph = new BlockGraph();
      await openBlockdev(graph, { driver: 'raw', 'node-name': 'drive0', file: { driver: 'file', filename: path } });
      const commands = new CommandTable<QmpContext>();
      addHmpCommands(commands);
      const ctx = { session: { negotiated: true, oob: false }, commands, events: [], version: { qemu: { major: 7, minor: 2, micro: 0 }, package: '' }, capabilities: [], graph, jobs: new JobManager(), jobEvents: jobEventListener(() => undefined, () => new JobManager()), exports: new BlockExports(graph, () => undefined), objects: new ObjectRegistry(graph.throttleGroups), quit: () => undefined };
      const hmp = async (line: string) => dispatch(commands, ctx.session, { execute: 'human-monitor-command', arguments: { 'command-line': line } }, ctx);

      const w = (await hmp('qemu-io drive0 "write -P 0x5a 4k 4k"')) as { return: string };
      expect(w.return).toMatch(/^wrote 4096\/4096 bytes at offset 4096\r\n4 KiB, 1 ops; .*\r\n$/);
      const r = (await hmp('qemu-io drive0 "read -P 0x5a 4k 4k"')) as { return: string };
      expect(r.return).toMatch(/^read 4096\/4096 bytes at offset 4096\r\n/);
      const bad = (await hmp('qemu-io drive0 "read -P 0x11 4k 4k"')) as { return: string };
      expect(bad.return).toContain('Pattern verification failed at offset 4096, 4096 bytes');
      expect(await hmp('qemu-io nope "read 0 1"')).toEqual({ return: "Error: Cannot find device='' nor node-name='nope'\r\n" });
      expect(await hmp('xyz')).toEqual({ return: "unknown command: 'xyz'\r\n" });
      expect(await hmp('info xyz')).toEqual({ return: "unknown command: 'info xyz'\r\n" });
      expect(await hmp('qemu-io')).toEqual({ return: 'qemu-io: block device name expected\r\nTry "help qemu-io" for more information\r\n' });
      await graph.closeAll();
    });
  });
});
