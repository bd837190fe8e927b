/**
 * `blockemu/vitest`: vitest fixtures for suites that test against a block
 * daemon. The only module of the package that imports vitest (an optional
 * peer dependency), so the main entry point works without it.
 *
 *     import { test, withDaemon } from 'blockemu/vitest';
 *     test('…', async ({ daemon, qmp, workdir }) => { … });
 *
 * - `workdir`: a fresh temporary directory, removed after the test.
 * - `daemon`: a fresh `startDaemon()` per test, closed after it whatever
 *   happens (failure, throw, timeout); options from `daemonOptions`.
 * - `qmp`: a connected, typed `QmpClient` to it (closed with the daemon).
 * - `daemonOptions`: `{}` unless a file or suite says otherwise with
 *   `withDaemon(opts)`, which may be a function of the test's `workdir`
 *   (to create images there first).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test as base } from 'vitest';
import { type EmbeddedDaemon, startDaemon, type StartDaemonOptions } from './embed.js';
import type { QmpClient } from './qmp/client.js';

/** The daemon's options, or a function giving them from the test's work directory. */
export type DaemonOptionsInput = StartDaemonOptions | ((ctx: { workdir: string }) => StartDaemonOptions | Promise<StartDaemonOptions>);

export interface BlockemuFixtures {
  workdir: string;
  daemonOptions: DaemonOptionsInput;
  daemon: EmbeddedDaemon;
  qmp: QmpClient;
}

// vitest reads each fixture's first parameter to learn what it depends on: it must be a destructuring pattern, even an empty one.
/* eslint-disable no-empty-pattern */
export const test = base.extend<BlockemuFixtures>({
  workdir: async ({}, use) => {
    const dir = await mkdtemp(join(tmpdir(), 'blockemu-test-'));
    try {
      await use(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
  // A function fixture even for a plain value: a value holding functions (onErrorReport) would be taken for a fixture function.
  daemonOptions: async ({}, use) => use({}),
  daemon: async ({ daemonOptions, workdir }, use) => {
    const opts = typeof daemonOptions === 'function' ? await daemonOptions({ workdir }) : daemonOptions;
    const d = await startDaemon(opts);
    try {
      await use(d);
    } finally {
      await d.close();
    }
  },
  qmp: async ({ daemon }, use) => use(await daemon.client()),
});

/**
 * `test` with these daemon options: `const test = withDaemon({ clock:
 * 'virtual' })` at the top of a file, or inside a `describe`.
 */
export function withDaemon(opts: DaemonOptionsInput): typeof test {
  return test.extend<Pick<BlockemuFixtures, 'daemonOptions'>>({ daemonOptions: async ({}, use) => use(opts) });
}

export const it = test;
