import { describe, expect, it } from 'vitest';
import { parseShellLine } from '../../src/cli/qmp-shell.js';

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
});
