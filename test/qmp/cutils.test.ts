/** QEMU's number parsing (util/cutils.c), checked on tests/unit/test-cutils.c's and test-keyval.c's cases, exactly (bigints). */
import { describe, expect, it } from 'vitest';
import { strtodFinite, strtoi64, strtosz, strtou64 } from '../../src/qmp/cutils.js';

const KiB = 1n << 10n;
const MiB = 1n << 20n;
const GiB = 1n << 30n;
const TiB = 1n << 40n;

describe('strtosz', () => {
  const good: Array<[string, bigint]> = [
    ['0', 0n],
    ['12345', 12345n],
    ['0x2a', 42n],
    ['0x1k', KiB], // deprecated (QEMU warns), still accepted
    ['8b', 8n],
    ['1.5k', 1536n],
    ['2M', 2n * MiB],
    ['0.1G', GiB / 10n],
    ['16777215T', 16777215n * TiB],
    ['0.5E', 1n << 59n],
    ['1.0B', 1n],
    ['1.k', KiB],
    ['1.', 1n],
    ['12.345M', 12944671n],
    ['9007199254740993', 9007199254740993n],
    ['18446744073709549568', 0xfffffffffffff800n],
    ['18446744073709551615', 0xffffffffffffffffn],
    [' 5', 5n],
    ['+5', 5n],
  ];
  it.each(good)('%s = %s', (s, v) => expect(strtosz(s)).toBe(v));
  const bad = ['', ' \t ', 'crap', 'inf', 'NaN', '1.1B', '1.1', '1.5e1k', '1.5E+0k', '0x1.8k', '-0', '-1', '123xxx', '1kiB', '18446744073709551616', '16777216T', '0Z', '16Gi', '0x', '08x'];
  it.each(bad)('%j is refused', (s) => expect(strtosz(s)).toBeUndefined());
});

describe('strtoi64 / strtou64 (base 0, whole string)', () => {
  it('reads decimal, hex and octal with sign and leading blanks', () => {
    expect(strtoi64('42')).toBe(42n);
    expect(strtoi64(' -0x2A')).toBe(-42n);
    expect(strtoi64('052')).toBe(42n);
    expect(strtoi64('-9223372036854775808')).toBe(-(1n << 63n));
    expect(strtou64('-1')).toBe((1n << 64n) - 1n);
    expect(strtou64('-18446744073709551615')).toBe(1n);
  });
  it.each(['', ' ', '08', '0x', '1 ', '1.0', '9223372036854775808', '--1', '0b1'])('strtoi64(%j) is refused', (s) => expect(strtoi64(s)).toBeUndefined());
  it.each(['18446744073709551616', '-18446744073709551616', 'x'])('strtou64(%j) is refused', (s) => expect(strtou64(s)).toBeUndefined());
});

describe('strtodFinite', () => {
  it('reads decimal and hex floats', () => {
    expect(strtodFinite('1.5e3')).toBe(1500);
    expect(strtodFinite(' -.5')).toBe(-0.5);
    expect(strtodFinite('0x1.8p1')).toBe(3);
  });
  it.each(['', 'inf', '-Infinity', 'nan', '1e999', '1e-400', '1 ', '1e', 'e1'])('%j is refused', (s) => expect(strtodFinite(s)).toBeUndefined());
});
