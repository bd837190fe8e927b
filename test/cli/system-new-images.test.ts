import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';
import { BASE, qemuSystem, qmpTranscript, type SystemProg, type Transcript } from '../helpers/system.js';

/**
 * Images that commands create, and graph edits on a drive's chain, on
 * `blockemu system` against qemu-system-x86_64 7.2: the "Formatting …"
 * line bdrv_img_create prints on stdout (iotests 085, 144), a snapshot
 * that would put a node below itself (085), and a reopen reaching the
 * backing file that a commit left (161). Replies, events and stdout are
 * compared.
 */
const CAPS = '{"execute": "qmp_capabilities"}';
const QUIT = '{"execute": "quit"}';
const generated = (l: string) => l.replace(/#block\d+/g, '#blockN');

if (!qemuSystem.available || !qemu.available) {
  if (process.env['CI'] === 'true') throw new Error('qemu-system-x86_64 and qemu-img are needed in CI');
  console.warn('skipping system-new-images tests: qemu-system-x86_64 or qemu-img is not installed');
}

/** A chain base <- int <- top for each program, its own files prefixed by its name. */
async function makeChain(p: (name: string) => string): Promise<void> {
  await qemuImg('create', '-f', 'qcow2', p('base.qcow2'), '1M');
  await qemuIo('-c', 'write -P 1 0 1M', p('base.qcow2'));
  await qemuImg('create', '-f', 'qcow2', '-b', p('base.qcow2'), '-F', 'qcow2', p('int.qcow2'));
  await qemuIo('-c', 'write -P 2 64k 64k', p('int.qcow2'));
  await qemuImg('create', '-f', 'qcow2', '-b', p('int.qcow2'), '-F', 'qcow2', p('top.qcow2'));
}

/** The same session on both programs; file names differ by the program's prefix only. */
async function session(dir: string, args: (p: (name: string) => string) => string[], requests: string[]): Promise<Transcript> {
  const out = {} as Record<SystemProg, Transcript>;
  for (const prog of ['qemu', 'blockemu'] as const) {
    const p = (name: string) => join(dir, `${prog}-${name}`);
    await makeChain(p);
    const t = await qmpTranscript(prog, dir, [...BASE, ...args(p)], requests.map((r) => r.replaceAll('DIR/PFX-', `${dir}/${prog}-`)));
    const own = (s: string) => s.replaceAll(`${dir}/${prog}-`, 'DIR/PFX-');
    out[prog] = { ...t, lines: t.lines.map((l) => own(generated(l))), stdout: own(t.stdout) };
  }
  expect(out.blockemu).toEqual(out.qemu);
  return out.blockemu;
}

describe.skipIf(!qemuSystem.available || !qemu.available)('blockemu system: images commands create, chain edits, against qemu-system-x86_64', () => {
  it('blockdev-snapshot-sync, drive-backup and drive-mirror announce the image they create on stdout', async () => {
    await withTempDir(async (dir) => {
      const t = await session(
        dir,
        (p) => ['-drive', `if=none,id=d0,file=${p('top.qcow2')}`],
        [
          CAPS,
          JSON.stringify({ execute: 'blockdev-snapshot-sync', arguments: { device: 'd0', 'snapshot-file': 'DIR/PFX-snap.qcow2', format: 'qcow2' } }),
          JSON.stringify({ execute: 'drive-backup', arguments: { device: 'd0', target: 'DIR/PFX-full.raw', format: 'raw', sync: 'full' } }),
          '{"wait": "BLOCK_JOB_COMPLETED"}',
          // sync=full: something to copy, so READY comes after the reply in both (with nothing, QEMU's is before it).
          JSON.stringify({ execute: 'drive-mirror', arguments: { device: 'd0', target: 'DIR/PFX-mirror.qcow2', format: 'qcow2', sync: 'full' } }),
          '{"wait": "BLOCK_JOB_READY"}',
          JSON.stringify({ execute: 'block-job-cancel', arguments: { device: 'd0' } }),
          '{"wait": "BLOCK_JOB_COMPLETED"}',
          // A file that cannot be created: the line comes first, then the failure.
          JSON.stringify({ execute: 'drive-backup', arguments: { device: 'd0', target: 'DIR/PFX-nodir/x.qcow2', format: 'qcow2', sync: 'full' } }),
          QUIT,
        ],
      );
      expect(t.stdout.split('\n')).toEqual([
        "Formatting 'DIR/PFX-snap.qcow2', fmt=qcow2 cluster_size=65536 extended_l2=off compression_type=zlib size=1048576 backing_file=DIR/PFX-top.qcow2 backing_fmt=qcow2 lazy_refcounts=off refcount_bits=16",
        "Formatting 'DIR/PFX-full.raw', fmt=raw size=1048576",
        "Formatting 'DIR/PFX-mirror.qcow2', fmt=qcow2 cluster_size=65536 extended_l2=off compression_type=zlib size=1048576 lazy_refcounts=off refcount_bits=16",
        "Formatting 'DIR/PFX-nodir/x.qcow2', fmt=qcow2 cluster_size=65536 extended_l2=off compression_type=zlib size=1048576 lazy_refcounts=off refcount_bits=16",
        '',
      ]);
    });
  });

  it('blockdev-snapshot refuses an overlay that would end up below itself', async () => {
    await withTempDir(async (dir) => {
      const add = (name: string, file: string, backing: string | null) =>
        JSON.stringify({ execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': name, backing, file: { driver: 'file', filename: file } } });
      const t = await session(
        dir,
        () => [],
        [
          CAPS,
          add('ov', 'DIR/PFX-int.qcow2', null),
          JSON.stringify({ execute: 'blockdev-snapshot', arguments: { node: 'ov', overlay: 'ov' } }),
          add('ov2', 'DIR/PFX-top.qcow2', 'ov'),
          JSON.stringify({ execute: 'blockdev-snapshot', arguments: { node: 'ov2', overlay: 'ov' } }),
          QUIT,
        ],
      );
      expect(t.lines).toContain(`{"error": {"class": "GenericError", "desc": "Making 'ov' a backing child of 'ov' would create a cycle"}}`);
      expect(t.lines).toContain(`{"error": {"class": "GenericError", "desc": "Making 'ov2' a backing child of 'ov' would create a cycle"}}`);
    });
  });

  it("a reopen with backing.* options reaches the backing file a commit or a stream left to the drive, not a removed one", async () => {
    await withTempDir(async (dir) => {
      const reopen = JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': 'qemu-io none0 "reopen -o backing.detect-zeroes=on"' } });
      const replies = (t: Transcript) => t.lines.filter((l) => l.startsWith('{"return": "'));
      const drive = (p: (name: string) => string) => ['-drive', `if=none,file=${p('top.qcow2')}`];
      const commit = await session(dir, drive, [
        CAPS,
        JSON.stringify({ execute: 'block-commit', arguments: { device: 'none0', top: 'DIR/PFX-int.qcow2' } }),
        '{"wait": "BLOCK_JOB_COMPLETED"}',
        reopen,
        QUIT,
      ]);
      expect(replies(commit)).toEqual(['{"return": ""}']);
      const stream = await session(dir, drive, [
        CAPS,
        JSON.stringify({ execute: 'block-stream', arguments: { device: 'none0', base: 'DIR/PFX-base.qcow2' } }),
        '{"wait": "BLOCK_JOB_COMPLETED"}',
        reopen,
        // Streamed to the end: no backing file is left for the option.
        JSON.stringify({ execute: 'block-stream', arguments: { device: 'none0' } }),
        '{"wait": "BLOCK_JOB_COMPLETED"}',
        reopen,
        QUIT,
      ]);
      expect(replies(stream)).toEqual(['{"return": ""}', `{"return": "Cannot change the option 'backing.detect-zeroes'\\r\\n"}`]);
    });
  });
});
