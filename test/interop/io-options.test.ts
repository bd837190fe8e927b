/**
 * `blockemu io`'s command-line options against qemu-io 7.2: the same
 * command lines (cache and AIO modes, -s, --image-opts, --object, getopt's
 * mistakes, help) run in two directories holding identical images; stdout,
 * stderr and exit code must be equal, then the images are compared with
 * qemu-img compare (and qcow2 ones checked).
 *
 * Normalised: the timing statistics (machine-dependent) and the program
 * name ("blockemu io" is "qemu-io"), on both streams since the usage text
 * names the program too. -V differs by design (the version string).
 */
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normaliseQemuIo, qemu, run, withTempDir, runBlockemu } from '../helpers/qemu.js';

type Format = 'raw' | 'qcow2';

interface Case {
  args: string[];
  /** The image the case starts from (named img in the working directory). */
  fmt: Format;
}

const c = (fmt: Format, ...args: string[]): Case => ({ fmt, args });
const W = ['-c', 'write -P 0x5a 0 64k', '-c', 'read -P 0x5a 0 64k', '-c', 'flush'];

const CASES: Case[] = [
  // the iotests harness's own line, and each cache mode
  c('qcow2', '--cache', 'none', '--aio', 'threads', '-f', 'qcow2', ...W, 'img'),
  c('qcow2', '--cache', 'writeback', '-f', 'qcow2', ...W, 'img'),
  c('qcow2', '--cache', 'writethrough', '-f', 'qcow2', ...W, 'img'),
  c('qcow2', '--cache', 'directsync', '-f', 'qcow2', ...W, 'img'),
  c('qcow2', '--cache=unsafe', '-f', 'qcow2', ...W, 'img'),
  c('qcow2', '-t', 'directsync', '-f', 'qcow2', '-c', 'write -c -P 1 0 64k', '-c', 'read -P 1 0 64k', 'img'),
  c('raw', '-t', 'off', '-f', 'raw', ...W, 'img'),
  c('raw', '-n', '-f', 'raw', ...W, 'img'),
  c('raw', '-f', 'raw', ...W, 'img', '-t', 'none'),
  c('raw', '-t', 'bogus', '-f', 'raw', 'img'),
  // AIO modes: native needs cache.direct
  c('qcow2', '-i', 'native', '-f', 'qcow2', ...W, 'img'),
  c('qcow2', '-i', 'native', '-t', 'none', '-f', 'qcow2', ...W, 'img'),
  c('qcow2', '-k', '-n', '-f', 'qcow2', ...W, 'img'),
  c('qcow2', '-k', '-f', 'qcow2', ...W, 'img'),
  c('qcow2', '-k', '-i', 'threads', '-f', 'qcow2', ...W, 'img'),
  c('raw', '--aio', 'io_uring', '-f', 'raw', ...W, 'img'),
  c('raw', '-i', 'posix', '-f', 'raw', 'img'),
  c('raw', '-k', '-c', 'read 0 1', 'missing'),
  // -s: a temporary overlay; the image itself stays as it was
  c('qcow2', '-s', '-f', 'qcow2', ...W, '-c', 'map', 'img'),
  c('raw', '-s', ...W, 'img'),
  c('qcow2', '-r', '-s', '-f', 'qcow2', '-c', 'write 0 512', 'img'),
  c('qcow2', '-s', '-f', 'qcow2', '-c', 'read 0 1', 'missing'),
  // open -o with more than driver=: the options with the path as the protocol's file name
  c('qcow2', '-c', 'open -o driver=qcow2,file.locking=off img', ...W),
  c('qcow2', '-c', 'open -o driver=file,filename=img', '-c', 'read 0 512'),
  c('qcow2', '-c', 'open -r -o driver=file,filename=.'),
  c('qcow2', '-c', 'open -o driver=file,filename=.'),
  c('qcow2', '-c', 'open -o driver=raw,file.bogus=1 img'),
  c('qcow2', '-c', 'open -o driver=qcow2,bogus=1 img'),
  // --image-opts
  c('qcow2', '--image-opts', ...W, 'driver=qcow2,file.filename=img'),
  c('qcow2', '--image-opts', ...W, 'driver=qcow2,file.driver=file,file.filename=img,cache.no-flush=on,discard=unmap'),
  c('qcow2', '--image-opts', '-f', 'qcow2', 'driver=qcow2,file.filename=img'),
  c('qcow2', '--image-opts', '-c', 'read 0 1', 'img'),
  c('qcow2', '--image-opts', '-c', 'read 0 1', 'driver=qcow2,file.filename=img,bogus=1'),
  c('raw', '--image-opts', '-c', 'read 0 1', 'driver=raw,file.filename=img,file.bogus=1'),
  c('qcow2', '--image-opts', '-c', 'read 0 1', 'driver=qcow3,file.filename=img'),
  c('qcow2', '--image-opts', '-c', 'read 0 1', 'driver=qcow2'),
  c('qcow2', '--image-opts', '-c', 'read 0 1', 'driver=qcow2,file.filename=missing'),
  c('qcow2', '--image-opts', '-i', 'native', '-c', 'read 0 1', 'driver=qcow2,file.filename=img'),
  c('qcow2', '--image-opts', '-i', 'native', ...W, 'driver=qcow2,file.filename=img,cache.direct=on'),
  c('qcow2', '--image-opts', '-U', '-r', '-c', 'read 0 1', 'driver=qcow2,file.filename=img,force-share=off'),
  c('qcow2', '--image-opts', '-c', 'read 0 1', 'driver=qcow2,file.filename=img,read-only=on'),
  c('raw', '--image-opts', '-c', 'read 0 1', 'file.filename=img'),
  // -U, -d, --object, the accepted no-ops
  c('qcow2', '-U', '-f', 'qcow2', '-c', 'read 0 1', 'img'),
  c('qcow2', '-U', '-r', '-f', 'qcow2', '-c', 'read 0 1', 'img'),
  c('raw', '-d', 'ignore', '-f', 'raw', '-c', 'discard 0 4k', 'img'),
  c('raw', '-d', 'bogus', 'img'),
  c('qcow2', '--object', 'secret,id=s0,data=x', '-f', 'qcow2', '-c', 'read 0 1', 'img'),
  c('qcow2', '--object', 'foo,id=s0', '-t', 'bogus', 'img'),
  c('qcow2', '-t', 'bogus', '--object', 'foo,id=s0', 'img'),
  // -T with a pattern no event matches: QEMU's trace events are not blockemu's (see README)
  c('qcow2', '-m', '-C', '-T', 'blockemu_none_*', '-f', 'qcow2', ...W, 'img'),
  // getopt's mistakes and the usage text
  c('raw', '-h'),
  c('raw', '--help=1'),
  c('raw', '-g', 'img'),
  c('raw', '-q', 'img'),
  c('raw', '--bogus=1', 'img'),
  c('raw', '--c', 'img'),
  c('raw', '-t'),
  c('raw', '--cache'),
  c('raw', '--cach=writeback', '-f', 'raw', '-c', 'read 0 1', 'img'),
  c('raw', '-f', 'raw', 'img', 'extra'),
  c('raw', '--', '-f', 'raw', 'img'),
  c('raw', '-f', 'raw', '-c', 'read 0 1', '--', 'img'),
  c('raw', '-rfraw', '-c', 'read 0 1', 'img'),
];

const sh = (args: string[]) => args.map((a) => (/^[\w,.=/-]+$/.test(a) ? a : `'${a}'`)).join(' ');

describe.skipIf(!qemu.available)('blockemu io options against qemu-io 7.2', () => {
  it.each(CASES.map((k) => [sh(k.args), k] as const))('%s', async (_name, k) => {
    await withTempDir(async (dir) => {
      const q = join(dir, 'q');
      const b = join(dir, 'b');
      // -s overlays go to $TMPDIR (QEMU's and ours): one per tool, checked empty afterwards.
      const tq = join(dir, 'tq');
      const tb = join(dir, 'tb');
      for (const d of [q, b, tq, tb]) await mkdir(d);
      for (const d of [q, b]) {
        const r = await run('qemu-img', ['create', '-f', k.fmt, join(d, 'img'), '1M']);
        expect(r.code).toBe(0);
      }
      const env = (t: string) => ({ ...process.env, TMPDIR: t });
      const rq = normaliseQemuIo(await run('qemu-io', k.args, { cwd: q, env: env(tq) }));
      const rb = normaliseQemuIo(await runBlockemu(['io', ...k.args], { cwd: b, env: env(tb) }));
      expect({ args: k.args, ...rb }).toEqual({ args: k.args, ...rq });
      const cmp = await run('qemu-img', ['compare', '-f', k.fmt, '-F', k.fmt, join(q, 'img'), join(b, 'img')]);
      expect(cmp.stdout + cmp.stderr).toBe('Images are identical.\n');
      if (k.fmt === 'qcow2') {
        const check = await run('qemu-img', ['check', '-f', 'qcow2', join(b, 'img')]);
        expect(check.stdout + check.stderr).toMatch(/^No errors were found on the image\./);
      }
      expect(await readdir(tb)).toEqual([]);
    });
  });

  it('-s leaves the image as it was', async () => {
    await withTempDir(async (dir) => {
      const img = join(dir, 'img');
      await run('qemu-img', ['create', '-f', 'qcow2', img, '1M']);
      const r = await runBlockemu(['io', '-s', '-f', 'qcow2', '-c', 'write -P 7 0 4k', '-c', 'read -P 7 0 4k', img]);
      expect(r.code).toBe(0);
      const after = await run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0 0 4k', img]);
      expect(after.code).toBe(0);
      expect(after.stdout).not.toMatch(/Pattern verification failed/);
    });
  });

  it('-V prints a version and the copyright line, as qemu-io', async () => {
    const q = await run('qemu-io', ['-V']);
    const b = await runBlockemu(['io', '-V']);
    const shape = (s: string) => s.replace(/^(qemu-io|blockemu io) version 7\.2\.\d+ \([^)]*\)$/m, 'VERSION');
    expect({ stdout: shape(b.stdout), code: b.code }).toEqual({ stdout: shape(q.stdout), code: q.code });
  });
});
