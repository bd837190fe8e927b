/**
 * getopt_long as qemu-img calls it: what it returns, and which argument a
 * mistake is blamed on (qemu-img prints argv[optind - 1]), checked against
 * what qemu-img resize 7.2 printed for the same command lines.
 */
import { describe, expect, it } from 'vitest';
import { Getopt, type GetoptEvent } from '../../src/cli/getopt.js';

const LONGS = [
  { name: 'help', hasArg: false },
  { name: 'object', hasArg: true },
  { name: 'image-opts', hasArg: false },
  { name: 'preallocation', hasArg: true },
  { name: 'shrink', hasArg: false },
];

function parse(args: string[]): { events: GetoptEvent[]; operands: string[] } {
  const g = new Getopt('resize', args, 'f:hq', LONGS);
  const events = [...g];
  return { events, operands: g.operands() };
}

describe('getopt_long', () => {
  it('moves operands behind the options, whatever their order', () => {
    expect(parse(['a.qcow2', '-f', 'qcow2', 'b', '--shrink'])).toEqual({
      events: [{ kind: 'option', name: 'f', value: 'qcow2' }, { kind: 'option', name: 'shrink' }],
      operands: ['a.qcow2', 'b'],
    });
  });

  it('clusters short options and takes an argument from the rest of the word', () => {
    expect(parse(['-qfqcow2', 'x']).events).toEqual([{ kind: 'option', name: 'q' }, { kind: 'option', name: 'f', value: 'qcow2' }]);
    expect(parse(['-qf', 'x']).operands).toEqual([]);
  });

  it('takes unambiguous prefixes of long options, with =value or the next word', () => {
    expect(parse(['--pre=full', '--sh', '--preallocation', 'off', 'x']).events).toEqual([
      { kind: 'option', name: 'preallocation', value: 'full' },
      { kind: 'option', name: 'shrink' },
      { kind: 'option', name: 'preallocation', value: 'off' },
    ]);
  });

  it('ends options at --, keeping what follows as operands', () => {
    expect(parse(['--shrink', '--', 'a', '-x'])).toEqual({ events: [{ kind: 'option', name: 'shrink' }], operands: ['a', '-x'] });
  });

  it.each([
    [['-x', 'a'], { kind: 'unrecognized', blamed: '-x' }],
    [['-qx', 'a'], { kind: 'unrecognized', blamed: '-qx' }],
    // The word is not finished, so optind still points at it: qemu-img blames the word before.
    [['-xq', 'a'], { kind: 'unrecognized', blamed: 'resize' }],
    [['a', '-xq'], { kind: 'unrecognized', blamed: 'a' }],
    [['--foo=bar', 'a'], { kind: 'unrecognized', blamed: '--foo=bar' }],
    [['--shrink=1', 'a'], { kind: 'unrecognized', blamed: '--shrink=1' }],
    [['a', '-f'], { kind: 'missing', blamed: '-f' }],
    [['a', '--preallocation'], { kind: 'missing', blamed: '--preallocation' }],
  ])('blames %j as qemu-img does', (args, last) => {
    expect(parse(args).events.at(-1)).toEqual(last);
  });
});
