import { describe, expect, it } from 'vitest';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED, permNames } from '../../src/image/perm.js';

describe('block permissions', () => {
  it("have QEMU 7.2's bit values (the lock bytes are 100 + bit and 200 + bit)", () => {
    expect([PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE, PERM_ALL]).toEqual([1, 2, 4, 8, 15]);
  });

  it('are named as bdrv_perm_names names them: in bit order, joined by ", "', () => {
    expect(permNames(0)).toBe('');
    expect(permNames(PERM_CONSISTENT_READ)).toBe('consistent read');
    expect(permNames(PERM_WRITE)).toBe('write');
    expect(permNames(PERM_WRITE_UNCHANGED)).toBe('write unchanged');
    expect(permNames(PERM_RESIZE)).toBe('resize');
    expect(permNames(PERM_RESIZE | PERM_CONSISTENT_READ)).toBe('consistent read, resize');
    expect(permNames(PERM_ALL)).toBe('consistent read, write, write unchanged, resize');
    expect(permNames(0x10 | PERM_WRITE)).toBe('write'); // 7.2 has no bit 0x10 (GRAPH_MOD is gone)
  });
});
