/**
 * `blockemu io` opening its image as qemu-io does (a node graph under a
 * BlockBackend), against qemu-io 7.2: blkdebug file names and config files,
 * `json:` names, `open -o` with filter drivers, the blkdebug breakpoint
 * commands, `reopen` and `info`. Each command line runs in two directories
 * holding identical images (and the same blkdebug config); stdout, stderr
 * and the exit code must be equal, then the images are compared.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normaliseQemuIo, qemu, run, withTempDir, runBlockemu } from '../helpers/qemu.js';

/** Fails every data read once the image's first read_aio is announced. */
const CONFIG = '[inject-error]\nevent = "read_aio"\nerrno = "5"\n';

const CASES: string[][] = [
  // blkdebug: file names, config files, open -o
  ['-c', 'read 0 512', '-c', 'write 0 512', 'blkdebug:bd.conf:img'],
  ['-f', 'qcow2', '-c', 'write -P 3 0 4k', '-c', 'read -P 3 0 4k', 'blkdebug::img'],
  ['-c', 'open -o driver=qcow2,file.align=4k blkdebug::img', '-c', 'write 0 512', '-c', 'read 0 512'],
  ['-c', 'open -o driver=blkdebug,image.driver=qcow2,align=4096 blkdebug::img', '-c', 'write -P 9 1000 8k', '-c', 'read -P 9 1000 8k'],
  ['-c', 'open -o driver=blkdebug,config=bd.conf,image.driver=qcow2 img', '-c', 'read 0 512'],
  ['-c', 'open -o driver=copy-on-read,file.driver=qcow2 img', '-c', 'write 0 512', '-c', 'read 0 512'],
  ['-c', 'open -o driver=qcow2,file.driver=blkdebug,file.image.filename=img,file.inject-error.0.event=write_aio', '-c', 'write 0 512'],
  ['-c', 'read 0 512', "json:{'driver': 'qcow2', 'file': {'driver': 'blkdebug', 'image': {'driver': 'file', 'filename': 'img'}}}"],
  ['-c', 'read 0 512', 'blkdebug:missing.conf:img'],
  // breakpoints: a request held, resumed; requests in flight meanwhile
  ['-c', 'break write_aio A', '-c', 'aio_write -P 1 0 4k', '-c', 'wait_break A', '-c', 'resume A', '-c', 'aio_flush', '-c', 'read -P 1 0 4k', 'blkdebug::img'],
  ['-c', 'break write_aio A', '-c', 'aio_write -P 1 0 4k', '-c', 'wait_break A', '-c', 'remove_break A', '-c', 'aio_flush', 'blkdebug::img'],
  ['-c', 'break bogus_event A', '-c', 'resume A', '-c', 'remove_break A', 'blkdebug::img'],
  ['-c', 'break write_aio A', '-c', 'resume A', '-c', 'remove_break A', '-c', 'remove_break B', 'img'],
  ['-c', 'break write_aio', 'blkdebug::img'],
  // reopen
  ['-r', '-c', 'reopen -w', '-c', 'write 0 64k', 'img'],
  ['-c', 'reopen -r', '-c', 'write 0 64k', 'img'],
  ['-c', 'reopen -o node-name=foo', 'img'],
  ['-c', 'reopen -o file.driver=qcow2', 'img'],
  ['-c', 'reopen -o driver=qcow2', '-c', 'reopen -c unsafe', '-c', 'write 0 4k', 'img'],
  ['-c', 'reopen -r -o read-only=on', 'img'],
  ['-c', 'reopen -c none -o cache.direct=on', 'img'],
  ['-c', 'reopen -o cache.no-flush=bar', 'img'],
  ['-c', 'reopen -r -w', 'img'],
  ['-c', 'reopen -c bogus', 'img'],
  // info
  ['-c', 'info', 'img'],
  ['-f', 'raw', '-c', 'info', 'img'],
  ['-c', 'info', 'blkdebug::img'],
  ['-f', 'null-co', '-c', 'info', "json:{'driver': 'null-co', 'size': 65536}"],
];

const sh = (args: string[]) => args.map((a) => (/^[\w,.=/:-]+$/.test(a) ? a : `'${a}'`)).join(' ');

describe.skipIf(!qemu.available)('blockemu io over a node graph against qemu-io 7.2', () => {
  it.each(CASES.map((k) => [sh(k), k] as const))('%s', async (_name, args) => {
    await withTempDir(async (dir) => {
      const q = join(dir, 'q');
      const b = join(dir, 'b');
      for (const d of [q, b]) {
        await mkdir(d);
        expect((await run('qemu-img', ['create', '-f', 'qcow2', join(d, 'img'), '1M'])).code).toBe(0);
        await writeFile(join(d, 'bd.conf'), CONFIG);
      }
      const rq = normaliseQemuIo(await run('qemu-io', args, { cwd: q }));
      const rb = normaliseQemuIo(await runBlockemu(['io', ...args], { cwd: b }));
      expect({ args, ...rb }).toEqual({ args, ...rq });
      const cmp = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', join(q, 'img'), join(b, 'img')]);
      expect(cmp.stdout + cmp.stderr).toBe('Images are identical.\n');
    });
  });
});
