/** The options every qemu-img subcommand loop takes alike, handled once by ImgGetopt. */
import { describe, expect, it } from 'vitest';
import { ImgGetopt } from '../../../src/cli/img/img-getopt.js';
import { ImgFailure, ImgHelpShown, PROG, runSubcommand } from '../../../src/cli/img/output.js';

const LONGS = [
  { name: 'help', hasArg: false },
  { name: 'object', hasArg: true },
  { name: 'image-opts', hasArg: false },
  { name: 'force-share', hasArg: false },
];
const parse = (args: string[]) => {
  const g = new ImgGetopt('x', args, ':hf:U', LONGS, 'x [-U] [-f fmt] filename');
  const seen = [...g].map((o) => `${o.name}=${o.value}`);
  return { g, seen };
};

describe('ImgGetopt', () => {
  it('takes -U/--force-share and --image-opts itself and yields the rest in order', () => {
    const a = parse(['-f', 'raw', '-U', 'img']);
    expect(a.seen).toEqual(['f=raw']);
    expect(a.g.forceShare).toBe(true);
    expect(a.g.imageOpts).toBe(false);
    expect(a.g.operands()).toEqual(['img']);
    const b = parse(['--image-opts', '--force-share', 'driver=file']);
    expect([b.g.forceShare, b.g.imageOpts]).toEqual([true, true]);
  });

  it('takes --object (a bad definition fails where the loop meets it), and shows the usage on -h (exit 0, stdout)', async () => {
    expect(parse(['--object', 'secret,id=s,data=x', '-f', 'raw', 'img']).seen).toEqual(['f=raw']);
    expect(() => parse(['--object', 'secret,id=s,bogus=1', 'img'])).toThrow(new ImgFailure("Parameter 'bogus' is unexpected"));
    expect(() => parse(['--object', 'nosuch,id=x', 'img'])).toThrow(new ImgFailure("Parameter 'qom-type' does not accept value 'nosuch'"));
    expect(() => parse(['-h'])).toThrow(ImgHelpShown);
    const out: string[] = [];
    const err: string[] = [];
    const code = await runSubcommand({ out: (t) => out.push(t), err: (t) => err.push(t) }, async () => {
      parse(['-f', 'raw', '--help', '-x']);
      return 1;
    });
    expect({ code, out, err }).toEqual({ code: 0, out: [`usage: ${PROG} x [-U] [-f fmt] filename\n`], err: [] });
  });
});
