/**
 * `blockemu img` before any subcommand runs, against qemu-img 7.2's main:
 * no arguments, an unknown command, `-h`/`--help` (qemu-img's help text),
 * `-V`/`--version` (what Nova and other tools parse the version from),
 * `-T` taken, `--`, and a command after such options. The version and the
 * formats line differ by design: blockemu names its own version and lists
 * the drivers it has; everything else must be the same bytes.
 */
import { describe, expect, it } from 'vitest';
import { qemu, type RunResult } from '../helpers/qemu.js';
import { blockemuImg, normalise, qemuImgIn, scratch } from './img-oracle.js';

/** The two lines that differ by design, replaced by their shape. */
function shape(r: RunResult, prog: string): RunResult {
  const fix = (t: string) =>
    t
      .replaceAll(prog, 'qemu-img')
      .replace(/^qemu-img version \d+\.\d+\.\d+ \(.*\)$/m, 'qemu-img version X')
      .replace(/^Supported formats: .*$/m, 'Supported formats: F');
  return { ...r, stdout: fix(r.stdout), stderr: fix(r.stderr) };
}

describe.skipIf(!qemu.available)('blockemu img top level (vs qemu-img)', () => {
  it.each([[[]], [['foo']], [['help']], [['-x']], [['-h']], [['--help']], [['-V']], [['--version']], [['-V', 'info', 'x']], [['-T']], [['--']], [['-T', 'x*', '--', 'info']]])(
    '%j answers as qemu-img does',
    async (args) => {
      const s = await scratch();
      try {
        const [b, q] = [await blockemuImg(args, s.dir), await qemuImgIn(args, s.dir)];
        expect({ args, ...shape(normalise(b), 'blockemu img') }).toEqual({ args, ...shape(q, 'qemu-img') });
      } finally {
        await s.done();
      }
    },
  );

  it('says its own version, and lists in its help the drivers it has', async () => {
    const v = await blockemuImg(['--version']);
    expect(v.stdout).toMatch(/^blockemu img version 7\.2\.0 \(blockemu \d+\.\d+\.\d+\)\nCopyright/);
    const h = await blockemuImg(['--help']);
    expect(h.stdout).toMatch(/^Supported formats: .*\bqcow2\b.*$/m);
    expect(h.stdout).not.toMatch(/^Supported formats: .*\bvmdk\b/m);
  });
});
