import { describe, expect, it } from 'vitest';
import { parseArgs, parseShellLine } from '../../src/cli/qmp-shell.js';
import { startDaemon } from '../../src/embed.js';
import { BLOCKEMU, run } from '../helpers/qemu.js';

describe('blockemu qmp line syntax', () => {
  it('takes a command with JSON or key=value arguments', () => {
    expect(parseShellLine('query-version')).toEqual({ command: 'query-version' });
    expect(parseShellLine('query-named-block-nodes {"flat": true}')).toEqual({ command: 'query-named-block-nodes', args: { flat: true } });
    expect(parseShellLine('blockdev-del node-name=disk0')).toEqual({ command: 'blockdev-del', args: { 'node-name': 'disk0' } });
    expect(parseShellLine('x speed=100 on=true')).toEqual({ command: 'x', args: { speed: 100, on: true } });
    expect(parseShellLine('x {1')).toMatchObject({ error: expect.stringContaining('not valid JSON') });
    expect(parseShellLine('x [1]')).toEqual({ error: "expected key=value, got '[1]'" });
    expect(parseShellLine('x oops')).toEqual({ error: "expected key=value, got 'oops'" });
  });

  it('takes the shell\'s words: several key=value words (values may hold spaces), or JSON split into words', () => {
    expect(parseArgs(['node=n0', 'name=b0', 'granularity=65536'])).toEqual({ args: { node: 'n0', name: 'b0', granularity: 65536 } });
    expect(parseArgs(['filename=/tmp/a b.qcow2'])).toEqual({ args: { filename: '/tmp/a b.qcow2' } });
    expect(parseArgs(['{"flat":', 'true}'])).toEqual({ args: { flat: true } });
    expect(parseArgs([])).toEqual({});
    expect(parseArgs(['node=n0', 'oops'])).toEqual({ error: "expected key=value, got 'oops'" });
  });
});

describe('blockemu qmp against a daemon', () => {
  it('sends a command given several key=value words', async () => {
    const d = await startDaemon({ blockdevs: [{ driver: 'null-co', 'node-name': 'n0' }] });
    try {
      const r = await run(process.execPath, [BLOCKEMU, 'qmp', '-s', d.socketPath, 'block-dirty-bitmap-add', 'node=n0', 'name=b0', 'granularity=131072']);
      expect(r).toMatchObject({ code: 0, stdout: '{}\n', stderr: '' });
      const c = await d.client();
      const nodes = await c.execute<Array<{ 'dirty-bitmaps'?: unknown[] }>>('query-named-block-nodes');
      expect(nodes[0]!['dirty-bitmaps']).toMatchObject([{ name: 'b0', granularity: 131072 }]);
    } finally {
      await d.close();
    }
  });
});
