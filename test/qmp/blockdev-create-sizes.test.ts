/**
 * 64-bit arguments stay exact from the wire to the command: blockdev-create
 * with sizes around every limit QEMU checks (a multiple of 512, the int64
 * sign, BDRV_MAX_LENGTH, the qcow2 L1 table's 32 MiB, the host file
 * system's limit), with the error each gives and the bytes each leaves in
 * the file, and a job speed past 2^53 echoed digit for digit. The same raw
 * lines go to qemu-storage-daemon and to blockemu.
 */
import { createHash } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Daemon } from '../helpers/bitmap-daemon.js';
import { OURS } from '../helpers/export-daemon.js';
import { qemu, withTempDir } from '../helpers/qemu.js';
import { RawQmp } from '../helpers/raw-qmp.js';

/** qcow2 options (as JSON text, so that no number passes through a double). */
const QCOW2 = [
  '"size": -1',
  '"size": 4611686018427387904',
  '"size": 9007199254740993',
  '"size": 9007199254740992',
  '"size": 9223372036854775808',
  '"size": -9223372036854775808',
  '"size": 9223372036854775296',
  '"size": 9223372035781033984',
  '"size": 18446744073709551615',
  '"size": 18446744073709551616',
  '"size": 1.5',
  '"size": 2251799813685248',
  '"size": 2251799813685760',
  '"size": 2305843009213694464, "cluster-size": 2097152',
  '"size": 1152921504606847488, "cluster-size": 2097152',
  '"size": 0',
  '"size": 4611686018427387904, "lazy-refcounts": true, "backing-file": "b.qcow2"',
  '"size": 1048576, "cluster-size": 18446744073709551615',
  '"size": 1048576, "cluster-size": 1099511627776',
  '"size": 1048576, "refcount-bits": 9223372036854775807',
];
/** file sizes: refused by the sign, by the file system, and one sparse TiB. */
const FILE = ['-1', '9223372036854775808', '4611686018427387904', '9007199254740993', '17592186044416', '1099511627776'];

async function session(which: Daemon): Promise<{ replies: string[]; jobs: string; files: string[] }> {
  return withTempDir(async (dir) => {
    const args: string[] = [];
    for (let i = 0; i < QCOW2.length; i++) {
      await writeFile(join(dir, `q${i}.qcow2`), '');
      args.push('--blockdev', `driver=file,node-name=f${i},filename=${join(dir, `q${i}.qcow2`)}`);
    }
    const s = await RawQmp.start(which, dir, args);
    const replies: string[] = [];
    const started: string[] = [];
    try {
      const run = async (id: string, options: string) => {
        const r = await s.command(`{"execute": "blockdev-create", "arguments": {"job-id": "${id}", "options": {${options}}}}`);
        replies.push(r);
        if (r === '{"return": {}}') started.push(id);
      };
      for (let i = 0; i < QCOW2.length; i++) await run(`q${i}`, `"driver": "qcow2", "file": "f${i}", ${QCOW2[i]}`);
      for (let i = 0; i < FILE.length; i++) await run(`f${i}`, `"driver": "file", "filename": "${join(dir, `f${i}.raw`)}", "size": ${FILE[i]}`);
      for (const id of started) await s.waitForEvent(`"status": "concluded", "id": "${id}"`);
      const jobs = (await s.command('{"execute": "query-jobs"}')).replaceAll(dir, '${TMP}');
      // A speed past 2^53, and the largest, come back as given.
      await s.command('{"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "n0"}}');
      await s.command('{"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "n1"}}');
      replies.push(await s.command('{"execute": "blockdev-backup", "arguments": {"job-id": "b", "device": "n0", "target": "n1", "sync": "none", "speed": 9007199254740993}}'));
      replies.push(await s.command('{"execute": "query-block-jobs"}'));
      replies.push(await s.command('{"execute": "block-job-set-speed", "arguments": {"device": "b", "speed": 9223372036854775807}}'));
      replies.push(await s.command('{"execute": "query-block-jobs"}'));
      replies.push(await s.command('{"execute": "block-job-set-speed", "arguments": {"device": "b", "speed": 9223372036854775808}}'));
      replies.push(await s.command('{"execute": "block-job-set-speed", "arguments": {"device": "b", "speed": -9223372036854775808}}'));
      const files: string[] = [];
      for (let i = 0; i < QCOW2.length; i++) files.push(createHash('md5').update(await readFile(join(dir, `q${i}.qcow2`))).digest('hex'));
      for (let i = 0; i < FILE.length; i++) {
        const f = await stat(join(dir, `f${i}.raw`)).then(
          (st) => `size ${st.size}`,
          (e: NodeJS.ErrnoException) => e.code ?? 'error',
        );
        files.push(f);
      }
      return { replies, jobs, files };
    } finally {
      await s.quit();
    }
  });
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('64-bit sizes and speeds', () => {
  it('blockdev-create and job speeds give the same replies, job errors and files as qemu-storage-daemon', async () => {
    const theirs = await session('qsd');
    expect(theirs.jobs).toContain('Failed to grow the L1 table: File too large');
    expect(theirs.replies.join('\n')).toContain('9007199254740993');
    const ours = await session(OURS);
    expect(ours.replies).toEqual(theirs.replies);
    expect(ours.jobs).toEqual(theirs.jobs);
    expect(ours.files).toEqual(theirs.files);
  }, 60_000);
});
