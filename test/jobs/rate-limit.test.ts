import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RateLimiter, SLICE_NS } from '../../src/jobs/rate-limit.js';

/** Runs tasks through the limiter on a simulated clock; returns the simulated seconds it took. */
function simulate(speed: number, tasks: number[]): number {
  let t = 0;
  const rl = new RateLimiter(speed, () => t);
  for (const n of tasks) {
    for (let d = rl.delay(0); d > 0; d = rl.delay(0)) t += d;
    rl.delay(n);
  }
  for (let d = rl.delay(0); d > 0; d = rl.delay(0)) t += d;
  return t / 1e9;
}

describe('RateLimiter (QEMU slice algorithm)', () => {
  it('is off at speed 0', () => {
    expect(simulate(0, [1 << 30, 1 << 30])).toBe(0);
  });

  it('4 MiB/s over 64 MiB of 1 MiB tasks takes about 16 s', () => {
    const s = simulate(4 << 20, Array<number>(64).fill(1 << 20));
    expect(s).toBeGreaterThan(15.5);
    expect(s).toBeLessThan(16.5);
  });

  it('never lets the average rate exceed the speed by more than one task per slice', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1024, max: 64 << 20 }), fc.array(fc.integer({ min: 1, max: 4 << 20 }), { minLength: 1, maxLength: 200 }), (speed, tasks) => {
        const total = tasks.reduce((a, b) => a + b, 0);
        const s = simulate(speed, tasks);
        // The last slice's charge is waited out too, so the time covers every byte.
        expect(total / Math.max(s, SLICE_NS / 1e9)).toBeLessThanOrEqual(speed + Math.max(...tasks) / (SLICE_NS / 1e9));
        expect(s).toBeGreaterThanOrEqual(total / speed - SLICE_NS / 1e9 - 1e-9);
      }),
    );
  });

  it('a speed change applies to the next request', () => {
    let t = 0;
    const rl = new RateLimiter(1 << 20, () => t);
    expect(rl.delay(1 << 20)).toBeGreaterThan(0);
    rl.setSpeed(0);
    expect(rl.delay(1 << 30)).toBe(0);
  });
});
