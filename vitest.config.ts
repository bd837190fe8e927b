import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two workers even on two cores: most tests wait on child processes (QEMU's tools, daemons), so
    // vitest's default of cores - 1 (one worker on CI's two cores) leaves half the machine idle.
    maxWorkers: 2,
  },
});
