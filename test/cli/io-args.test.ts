/**
 * qemu-io's command line as blockemu io reads it: the option table, the
 * cache modes (bdrv_parse_cache_mode), the order in which mistakes are met,
 * and --image-opts strings (QemuOpts syntax). The interop tests compare the
 * whole tool with qemu-io; these pin the parse itself.
 */
import { describe, expect, it } from 'vitest';
import { parseCacheMode, parseIoArgs } from '../../src/cli/io-args.js';
import { parseImageOpts } from '../../src/blockdev/qemu-io/qemu-opts.js';

const args = (argv: string[]) => {
  const p = parseIoArgs(argv);
  if (!('args' in p)) throw new Error(`no args: ${JSON.stringify(p)}`);
  return p.args;
};

describe('qemu-io options', () => {
  it('reads the iotests harness line, options after the file included', () => {
    const a = args(['--cache', 'none', '--aio', 'threads', '-f', 'qcow2', 'img', '-c', 'read 0 1']);
    expect(a).toMatchObject({ format: 'qcow2', file: 'img', commands: ['read 0 1'], aio: 'threads', cache: { direct: true, writethrough: false, noFlush: false } });
  });

  it('defaults to writethrough, as qemu-io does, and each -t replaces the earlier mode', () => {
    expect(args([]).cache).toEqual({ direct: false, noFlush: false, writethrough: true });
    expect(args(['-n', '-t', 'unsafe']).cache).toEqual({ direct: false, noFlush: true, writethrough: false });
    expect(parseCacheMode('directsync')).toEqual({ direct: true, noFlush: false, writethrough: true });
    expect(parseCacheMode('writeback ')).toBeUndefined();
  });

  it('keeps -k through a later -i threads (bdrv_parse_aio sets no flag for threads)', () => {
    expect(args(['-k', '-i', 'threads']).aio).toBe('native');
  });

  it('stops at the first bad option value, in command-line order', () => {
    expect(parseIoArgs(['-t', 'x', '-i', 'y'])).toEqual({ exit: 1, stderr: 'blockemu io: Invalid cache option: x\n' });
    expect(parseIoArgs(['-i', 'y', '-t', 'x'])).toEqual({ exit: 1, stderr: 'blockemu io: Invalid aio option: y\n' });
    expect(parseIoArgs(['--object', 'foo,id=a', '-t', 'x'])).toEqual({ exit: 1, stderr: "blockemu io: Parameter 'qom-type' does not accept value 'foo'\n" });
  });

  it('says what glibc says about getopt mistakes, then prints the usage', () => {
    const err = (argv: string[]) => (parseIoArgs(argv) as { stderr: string }).stderr;
    expect(err(['-g'])).toBe("blockemu io: invalid option -- 'g'\n");
    expect(err(['--c'])).toBe("blockemu io: option '--c' is ambiguous; possibilities: '--cmd' '--copy-on-read' '--cache'\n");
    expect(err(['--cach'])).toBe("blockemu io: option '--cache' requires an argument\n");
    expect(err(['--help=x'])).toBe("blockemu io: option '--help' doesn't allow an argument\n");
    expect(err(['--x=1'])).toBe("blockemu io: unrecognized option '--x=1'\n");
    expect((parseIoArgs(['-t']) as { stdout: string }).stdout).toMatch(/^Usage: blockemu io \[OPTIONS\]/);
  });

  it('refuses --image-opts with -f only after all options parsed, and two operands with the usage', () => {
    expect(parseIoArgs(['-f', 'raw', '--image-opts', 'x'])).toEqual({ exit: 1, stderr: 'blockemu io: --image-opts and -f are mutually exclusive\n' });
    expect(parseIoArgs(['a', 'b'])).toMatchObject({ exit: 1, stdout: expect.stringMatching(/^Usage/) });
    expect(parseIoArgs(['-V'])).toEqual({ version: true });
  });
});

describe('--image-opts strings', () => {
  it('reads QemuOpts syntax: ",," is a comma, a bare key is a deprecated "on"', () => {
    const p = parseImageOpts('driver=qcow2,file.filename=a,,b,nolocking,x');
    expect([...p.opts]).toEqual([['driver', 'qcow2'], ['file.filename', 'a,b'], ['locking', 'off'], ['x', 'on']]);
    expect(p.warnings).toEqual([
      "warning: short-form boolean option 'locking' deprecated\nPlease use locking=off instead",
      "warning: short-form boolean option 'x' deprecated\nPlease use x=on instead",
    ]);
  });
});
