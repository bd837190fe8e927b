/**
 * `blockemu/vitest`: a fresh daemon and client per test, options per file
 * or suite, and cleanup whatever the test does. The tests run in order
 * (vitest's default within a file): some look at what an earlier one left.
 */
import { access, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { QmpClient } from '../src/index.js';
import { test, withDaemon } from '../src/vitest.js';

let previous: { socketPath: string; workdir: string } | undefined;
const gone = async (path: string) => access(path).then(() => false, () => true);

describe('the daemon and qmp fixtures', () => {
  test('give a started daemon and a negotiated client', async ({ daemon, qmp, workdir }) => {
    await qmp.execute('blockdev-add', { driver: 'null-co', 'node-name': 'left-behind' });
    expect((await qmp.execute('query-named-block-nodes')).map((n) => n['node-name'])).toEqual(['left-behind']);
    previous = { socketPath: daemon.socketPath, workdir };
  });

  test('each test has its own daemon; the last one was closed and its workdir removed', async ({ daemon, qmp }) => {
    expect(daemon.socketPath).not.toBe(previous!.socketPath);
    expect(await qmp.execute('query-named-block-nodes')).toEqual([]);
    expect(await gone(previous!.socketPath)).toBe(true);
    expect(await gone(previous!.workdir)).toBe(true);
  });

  // The test fails on purpose; `fails` turns its failure into a pass, and the next test checks the cleanup.
  test.fails('a failing test (expected to fail here)', async ({ daemon, workdir }) => {
    previous = { socketPath: daemon.socketPath, workdir };
    await writeFile(join(workdir, 'junk'), 'x');
    throw new Error('the test failed');
  });

  test('is cleaned up after a failure too', async () => {
    expect(await gone(previous!.socketPath)).toBe(true);
    expect(await gone(previous!.workdir)).toBe(true);
    await expect(QmpClient.connect(previous!.socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('withDaemon', () => {
  const virtual = withDaemon({ clock: 'virtual', blockdevs: [{ driver: 'null-co', 'node-name': 'n0', size: 1 << 20 }] });
  virtual('starts the daemon with these options', async ({ qmp }) => {
    expect(await qmp.execute('__org.blockemu_query-clock')).toEqual({ mode: 'virtual', ns: 0 });
    expect((await qmp.execute('query-named-block-nodes')).map((n) => n['node-name'])).toEqual(['n0']);
  });

  const withImage = withDaemon(async ({ workdir }) => {
    const filename = join(workdir, 'disk.raw');
    await writeFile(filename, new Uint8Array(64 << 10));
    return { blockdevs: [{ driver: 'raw', 'node-name': 'disk', file: { driver: 'file', filename } }] };
  });
  withImage('takes a function of the workdir, for images made before the start', async ({ qmp, workdir }) => {
    const [node] = await qmp.execute('query-named-block-nodes', { flat: false });
    expect({ name: node!['node-name'], file: node!.file, size: node!.image['virtual-size'] }).toEqual({ name: 'disk', file: join(workdir, 'disk.raw'), size: 64 << 10 });
  });

  test('leaves the default alone', async ({ qmp }) => {
    expect((await qmp.execute('__org.blockemu_query-clock')).mode).toBe('real');
  });

  describe("or vitest's test.override, for a suite", () => {
    test.override('daemonOptions', { clock: 'virtual' });
    test('uses the overridden options', async ({ qmp }) => {
      expect((await qmp.execute('__org.blockemu_query-clock')).mode).toBe('virtual');
    });
  });
});
