import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (f: string) => fileURLToPath(new URL(`./src/${f}`, import.meta.url));

export default defineConfig({
  // The examples import the package by name, as users do; here it is the sources.
  resolve: {
    alias: [
      { find: /^blockemu$/, replacement: src('index.ts') },
      { find: /^blockemu\/vitest$/, replacement: src('vitest.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two workers even on two cores: most tests wait on child processes (QEMU's tools, daemons), so
    // vitest's default of cores - 1 (one worker on CI's two cores) leaves half the machine idle.
    maxWorkers: 2,
  },
});
