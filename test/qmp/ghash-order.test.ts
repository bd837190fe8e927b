/** Which of several unexpected members QEMU names: answers recorded from qemu-storage-daemon 7.2 (GLib 2.74). */
import { describe, expect, it } from 'vitest';
import { firstLeftover } from '../../src/qmp/ghash-order.js';

describe('firstLeftover', () => {
  it("names the member qemu-storage-daemon names for blockdev-add's leftovers", () => {
    // Keys as sent (driver first), and the members the visit consumed.
    expect(firstLeftover(['driver', 'zz', 'aa'], ['driver'])).toBe('aa');
    expect(firstLeftover(['driver', 'aa', 'zz'], ['driver'])).toBe('aa');
    expect(firstLeftover(['driver', 'x', 'y', 'z'], ['driver'])).toBe('z');
    expect(firstLeftover(['driver', 'bogus', 'extra', 'more', 'other'], ['driver'])).toBe('more');
    expect(firstLeftover(['driver', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8', 'a9'], ['driver'])).toBe('a4');
  });
  it('is undefined when every key was consumed, across grow and shrink resizes', () => {
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    expect(firstLeftover(keys, keys)).toBeUndefined();
    expect(firstLeftover(keys, keys.slice(1))).toBe('k0');
  });
});
