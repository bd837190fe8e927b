/**
 * blockdev-reopen played on qemu-storage-daemon and on blockemu with the
 * same images and the same QMP session (as iotest 245 does on QEMU):
 * read-only <-> read-write with the inline children following and the
 * image locks qemu-io meets, persistent bitmaps stored and flagged in use
 * again, auto-read-only; backing links replaced, detached, refused (cycles,
 * missing, raw) and the implicit backing nodes they drop; file children
 * replaced and swapped; what cannot change and what cannot be reset, per
 * driver; and a reopen of several nodes undone as a whole when one entry
 * fails. Replies, events, query-named-block-nodes and what QEMU's tools
 * see of the images must be equal.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareSessions, file, nbdWrite, opens, type Step } from '../helpers/qmp-session.js';
import { qemu, qemuImg, qemuIo, run } from '../helpers/qemu.js';

/** Runs qemu-img/qemu-io steps in `dir`, each of which must say nothing on stderr. */
const images = (...cmds: string[][]) => async (dir: string) => {
  for (const [tool, ...args] of cmds) {
    const r = await (tool === 'img' ? qemuImg : qemuIo)(...args.map((a) => (a.endsWith('.qcow2') || a.endsWith('.raw') ? join(dir, a) : a)));
    expect(r.stderr).toBe('');
  }
};

/** qcow2 node `hdN` over hN.qcow2 with its file node `hdN-file`, plus extra options. */
const hd = (n: number, extra: Record<string, unknown> = {}) => ({ driver: 'qcow2', 'node-name': `hd${n}`, file: { ...file(`h${n}.qcow2`), 'node-name': `hd${n}-file` }, ...extra });
/** The same node's options for a reopen naming its file node by reference. */
const hdRef = (n: number, extra: Record<string, unknown> = {}) => ({ driver: 'qcow2', 'node-name': `hd${n}`, file: `hd${n}-file`, ...extra });
const reopen = (...options: Record<string, unknown>[]): Step => ['blockdev-reopen', { options }];
const nodes: Step = ['query-named-block-nodes', { flat: true }];

/** Whether qemu-io finds `pattern` at `offset` through an NBD export of the session's server (its exit code and what it says but the timing). */
const readsNbd = (exp: string, pattern: number, offset: string) => async (dir: string) => {
  const r = await run('qemu-io', ['-r', '-f', 'raw', '-c', `read -P ${pattern} ${offset} 512`, `nbd+unix:///${exp}?socket=${join(dir, 'nbd.sock')}`]);
  return { code: r.code, out: r.stdout.replace(/^\d+ bytes, .*$/m, ''), err: r.stderr };
};
/** The persistent bitmaps' flags as qemu-img info shows them (in-use while a writer has the image). */
const bitmapFlags = (name: string) => async (dir: string) => {
  const info = JSON.parse((await run('qemu-img', ['info', '-U', '--output=json', join(dir, name)])).stdout) as { 'format-specific': { data: { bitmaps?: unknown } } };
  return info['format-specific'].data.bitmaps ?? null;
};
const nbdServer: Step = ['nbd-server-start', { addr: { type: 'unix', data: { path: '${DIR}/nbd.sock' } } }];

/** Drops actual-size: a stored bitmap's clusters are written whole by blockemu, sparsely by QEMU (same layout, other host blocks). */
const withoutActualSize = (log: unknown[]) => JSON.parse(JSON.stringify(log).replace(/,?"actual-size":\d+/g, '')) as unknown[];

// The sessions share nothing (own directories, daemons and sockets), so they play at once.
describe.skipIf(!qemu.available || !qemu.storageDaemon)('blockdev-reopen, as qemu-storage-daemon does it', () => {
  it.concurrent('a qcow2 node reopened onto a raw node over its own file keeps allocating clusters past the file end (tests/reopen-file)', async () => {
    await compareSessions(
      images(['img', 'create', '-q', '-f', 'qcow2', 'h0.qcow2', '1M']),
      [
        nbdServer,
        ['blockdev-add', hd(0)],
        ['blockdev-add', { driver: 'raw', 'node-name': 'raw', file: 'hd0-file' }],
        reopen({ driver: 'qcow2', 'node-name': 'hd0', file: 'raw' }),
        ['block-export-add', { type: 'nbd', id: 'e', 'node-name': 'hd0', writable: true }],
        { sh: nbdWrite('hd0', 'write -P 42 0 64k') },
        { sh: readsNbd('hd0', 42, '0') },
        ['block-export-del', { id: 'e' }],
      ],
      withoutActualSize,
    );
  }, 60_000);

  it.concurrent('read-only and back: inline children follow, locks as qemu-io meets them, bitmaps stored and in use again, writers refuse, auto-read-only', async () => {
    const log = await compareSessions(
      images(['img', 'create', '-q', '-f', 'qcow2', 'h0.qcow2', '1M']),
      [
        nbdServer,
        ['blockdev-add', hd(0)],
        ['block-dirty-bitmap-add', { node: 'hd0', name: 'b0', persistent: true }],
        { sh: opens('h0.qcow2') },
        reopen(hdRef(0, { 'read-only': true })),
        nodes,
        { sh: opens('h0.qcow2') },
        { sh: bitmapFlags('h0.qcow2') },
        ['block-dirty-bitmap-clear', { node: 'hd0', name: 'b0' }],
        // A file named by reference keeps its options, read-only among them: the format node alone cannot go back.
        reopen(hdRef(0)),
        reopen(hd(0)),
        { sh: opens('h0.qcow2') },
        { sh: bitmapFlags('h0.qcow2') },
        ['block-dirty-bitmap-clear', { node: 'hd0', name: 'b0' }],
        // A writer keeps its node writable: an export, or the format node above a file node.
        ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'hd0', writable: true }],
        reopen(hdRef(0, { 'read-only': true })),
        ['block-export-del', { id: 'e0' }],
        reopen({ ...file('h0.qcow2'), 'node-name': 'hd0-file', 'read-only': true }),
        // The file given inline again: its node-name is not among its options any more, so naming it now is a change.
        reopen({ ...hdRef(0), file: { ...file('h0.qcow2'), 'auto-read-only': true } }),
        { sh: opens('h0.qcow2') },
        reopen({ ...hdRef(0), file: { ...file('h0.qcow2'), 'auto-read-only': true, 'node-name': 'hd0-file' } }),
        reopen({ ...hdRef(0), file: { ...file('h0.qcow2'), 'auto-read-only': true }, 'read-only': true, 'detect-zeroes': 'on', cache: { 'no-flush': true } }),
        { sh: opens('h0.qcow2') },
        reopen({ ...hdRef(0), file: file('h0.qcow2'), 'detect-zeroes': 'unmap' }),
        reopen({ ...hdRef(0), file: file('h0.qcow2'), 'detect-zeroes': 'unmap', discard: 'unmap' }),
        { sh: opens('h0.qcow2') },
        nodes,
      ],
      withoutActualSize,
    );
    expect(JSON.stringify(log)).toContain("Read-only block node 'hd0' cannot support read-write users");
    expect(JSON.stringify(log)).toContain("Read-only block node 'hd0-file' cannot support read-write users");
  }, 60_000);

  it.concurrent('backing: missing, replaced (the implicit chain goes, its locks with it), detached, cycles refused, raw has none; reads follow the chain', async () => {
    const log = await compareSessions(
      images(
        ['img', 'create', '-q', '-f', 'qcow2', 'h0.qcow2', '3M'],
        ['img', 'create', '-q', '-f', 'qcow2', '-b', 'h0.qcow2', '-F', 'qcow2', 'h1.qcow2'],
        ['img', 'create', '-q', '-f', 'qcow2', 'h2.qcow2', '3M'],
        ['io', '-f', 'qcow2', '-c', 'write -q -P 0xa1 1M 1M', 'h1.qcow2'],
        ['io', '-f', 'qcow2', '-c', 'write -q -P 0xa2 2M 1M', 'h2.qcow2'],
      ),
      [
        nbdServer,
        ['blockdev-add', hd(1)],
        reopen(hdRef(1)),
        reopen(hdRef(1, { backing: 'not-found' })),
        reopen(hdRef(1, { backing: { driver: 'qcow2', file: file('h0.qcow2') } })),
        reopen(hdRef(1, { backing: { driver: 'qcow2', 'node-name': 'newname', file: file('h0.qcow2') } })),
        reopen(hdRef(1, { backing: { driver: 'raw', file: file('h0.qcow2') } })),
        ['blockdev-add', { ...hd(2), backing: null }],
        reopen(hdRef(1, { backing: 'hd2' })),
        nodes,
        // h0 is nobody's now: it can be opened read-write.
        ['blockdev-add', { ...hd(0), backing: null }],
        reopen(hdRef(0, { backing: 'hd1' })),
        ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'hd0' }],
        { sh: readsNbd('hd0', 0xa1, '1M') },
        { sh: readsNbd('hd0', 0xa2, '2M') },
        reopen(hdRef(2, { backing: 'hd0' })),
        reopen(hdRef(2, { backing: 'hd2' })),
        ['blockdev-del', { 'node-name': 'hd1' }],
        reopen(hdRef(1, { backing: null })),
        { sh: readsNbd('hd0', 0, '2M') },
        // hd1's image names a backing file, so it must say; hd2's does not.
        reopen(hdRef(1)),
        reopen(hdRef(2)),
        // Any node that does not lead back may be a backing child, even another's file node.
        reopen(hdRef(2, { backing: 'hd0-file' })),
        nodes,
        ['blockdev-add', { driver: 'raw', 'node-name': 'r', file: file('h2.qcow2'), 'read-only': true }],
        reopen({ driver: 'raw', 'node-name': 'r', file: file('h2.qcow2'), backing: 'hd0' }),
      ],
    );
    const text = JSON.stringify(log);
    expect(text).toContain("backing is missing for 'hd1'");
    expect(text).toContain("Making 'hd0' a backing child of 'hd2' would create a cycle");
    expect(text).toContain("Parameter 'options[0].backing' is unexpected");
  }, 60_000);

  it.concurrent('qcow2 nodes swapping their files (iotest 245 test_swap_files): a reopen empties the L2 and refcount caches, so L2 tables come from the new file while the L1 table stays', async () => {
    await compareSessions(
      images(
        ['img', 'create', '-q', '-f', 'qcow2', 'h0.qcow2', '3M'],
        ['img', 'create', '-q', '-f', 'qcow2', 'h2.qcow2', '3M'],
        ['io', '-c', 'write -q -P 0xa0 0 1M', 'h0.qcow2'],
        ['io', '-c', 'write -q -P 0xa2 2M 1M', 'h2.qcow2'],
      ),
      [
        nbdServer,
        ['blockdev-add', hd(0)],
        ['blockdev-add', hd(2)],
        ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'hd0', writable: true }],
        ['block-export-add', { type: 'nbd', id: 'e2', 'node-name': 'hd2', writable: true }],
        { sh: nbdWrite('hd0', 'write -q -P 0xb0 0 1k') },
        { sh: nbdWrite('hd2', 'write -q -P 0xb2 0 1k') },
        reopen(hdRef(0, { file: 'hd2-file' }), hdRef(2, { file: 'hd0-file' })),
        // hd2's L1 table names its L2 table's offset, which in h0 holds h0's L2 table: h0's data shows through.
        { sh: readsNbd('hd2', 0xb0, '0') },
        { sh: readsNbd('hd2', 0xa0, '512k') },
        { sh: readsNbd('hd0', 0xb2, '0') },
        reopen(hdRef(0), hdRef(2)),
        { sh: readsNbd('hd0', 0xb0, '0') },
        { sh: readsNbd('hd2', 0xb2, '0') },
        { sh: readsNbd('hd2', 0xa2, '2M') },
      ],
    );
  }, 60_000);

  it.concurrent("file children replaced and swapped, raw windows, and each driver's options that cannot change or be reset", async () => {
    const raw = (name: string, fileRef: unknown, extra: Record<string, unknown> = {}) => ({ driver: 'raw', 'node-name': name, file: fileRef, ...extra });
    const log = await compareSessions(
      images(
        ['img', 'create', '-q', '-f', 'raw', 'x0.raw', '10k'],
        ['img', 'create', '-q', '-f', 'raw', 'x1.raw', '10k'],
        ['img', 'create', '-q', '-f', 'raw', 'f.raw', '10k'],
        ['img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', 'v2.qcow2', '1M'],
        ['io', '-f', 'raw', '-c', 'write -q -P 1 512 9k', 'x0.raw'],
        ['io', '-f', 'raw', '-c', 'write -q -P 2 0 10k', 'x1.raw'],
      ),
      [
        nbdServer,
        ['blockdev-add', { ...file('x0.raw'), 'node-name': 'x0' }],
        ['blockdev-add', { ...file('x1.raw'), 'node-name': 'x1' }],
        ['blockdev-add', raw('x', 'x0')],
        ['blockdev-add', raw('y', 'x1')],
        reopen(raw('x', 'x1')),
        reopen(raw('x', 'x1'), raw('y', 'x0')),
        ['block-export-add', { type: 'nbd', id: 'ex', 'node-name': 'x' }],
        { sh: readsNbd('x', 2, '0') },
        ['blockdev-del', { 'node-name': 'x0' }],
        reopen(raw('x', 'x0', { offset: 512 }), raw('y', 'x1')),
        { sh: readsNbd('x', 1, '0') },
        reopen(raw('x', 'x0', { offset: 2_000_000 })),
        reopen(raw('x', 'x0', { size: 1000 })),
        reopen(raw('x', 'x0', { size: 1024 })),
        nodes,
        reopen({ driver: 'raw' }),
        reopen(raw('nope', 'x0')),
        reopen(raw('x', 'x0'), raw('nope', 'x0')),
        reopen({ ...raw('x', 'x0'), driver: 'qcow2' }),
        // file-posix: every option but x-check-cache-dropped stays; numbers that pass QemuOpts come back as text, so even an equal one differs.
        ['blockdev-add', { ...file('x1.raw'), 'node-name': 'fb', 'read-only': true, 'aio-max-batch': 4 }],
        reopen({ ...file('x1.raw'), 'node-name': 'fb', 'read-only': true, 'aio-max-batch': 4 }),
        reopen({ ...file('x1.raw'), 'node-name': 'fb', 'read-only': true }),
        ['blockdev-add', raw('f', { ...file('f.raw'), 'node-name': 'ff', locking: 'off', 'x-check-cache-dropped': true })],
        reopen(raw('f', { ...file('f.raw'), locking: 'off' })),
        reopen(raw('f', { ...file('f.raw') })),
        reopen({ ...file('f.raw'), 'node-name': 'ff', locking: 'on' }),
        reopen(raw('f', { ...file('x1.raw'), locking: 'off' })),
        reopen(raw('f', { ...file('f.raw'), 'node-name': 'other', locking: 'off' })),
        reopen(raw('f', 'ff', { 'force-share': false })),
        reopen(raw('f', 'ff', { cache: {} })),
        ['blockdev-add', { driver: 'null-co', 'node-name': 'n', size: 1024 }],
        reopen({ driver: 'null-co', 'node-name': 'n', size: 1024, 'read-only': true }),
        reopen({ driver: 'null-co', 'node-name': 'n', size: 2048 }),
        reopen({ driver: 'null-co', 'node-name': 'n' }),
        ['blockdev-add', { driver: 'blkdebug', 'node-name': 'bd', config: '/dev/null', image: raw('bdr', file('x1.raw'), { 'read-only': true }) }],
        reopen({ driver: 'blkdebug', 'node-name': 'bd', config: '/dev/null', image: 'bdr' }),
        reopen({ driver: 'blkdebug', 'node-name': 'bd', config: '/dev/null', image: 'n' }),
        reopen({ driver: 'blkdebug', 'node-name': 'bd', image: 'bdr' }),
        reopen({ driver: 'blkdebug', 'node-name': 'bd', config: '/dev/null', image: 'bdr', align: 4096 }),
        // qcow2 takes its own options and checks them; a v2 image has no lazy refcounts.
        ['blockdev-add', { ...hd(2), file: file('v2.qcow2') }],
        reopen({ ...hd(2), file: file('v2.qcow2'), 'lazy-refcounts': true }),
        reopen({ ...hd(2), file: file('v2.qcow2'), 'l2-cache-entry-size': 131072 }),
        reopen({ ...hd(2), file: file('v2.qcow2'), 'l2-cache-size': 1048576, 'cache-size': 524288 }),
        reopen({ ...hd(2), file: file('v2.qcow2'), 'overlap-check': { template: 'all', 'main-header': false }, 'pass-discard-other': true, 'cache-clean-interval': 5 }),
        reopen({ ...hd(2), file: file('v2.qcow2'), encrypt: { format: 'luks', 'key-secret': 'k' } }),
        nodes,
      ],
    );
    const text = JSON.stringify(log);
    expect(text).toContain("Option 'locking' cannot be reset to its default value");
    expect(text).toContain("Cannot change the option 'aio-max-batch'");
  }, 60_000);

  it.concurrent("qcow2's runtime options checked at blockdev-add too, and lazy refcounts turning the image dirty until the node closes", async () => {
    /** The header's incompatible feature bits (bit 0: dirty), read as they are on disk. */
    const dirtyBits = (name: string) => async (dir: string) => `dirty bits of ${name}: ${(await readFile(join(dir, name))).readBigUInt64BE(72)}`;
    const log = await compareSessions(
      images(['img', 'create', '-q', '-f', 'qcow2', 'h0.qcow2', '1M'], ['img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', 'h2.qcow2', '1M'], ['img', 'create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', 'h1.qcow2', '1M']),
      [
        ['blockdev-add', hd(0, { 'cache-size': 1048576, 'l2-cache-size': 2097152 })],
        ['blockdev-add', hd(0, { 'cache-size': 1048576, 'l2-cache-size': 524288, 'refcount-cache-size': 524288 })],
        ['blockdev-add', hd(0, { 'l2-cache-entry-size': 300 })],
        ['blockdev-add', hd(0, { 'cache-clean-interval': 4294967296 })],
        ['blockdev-add', hd(2, { 'lazy-refcounts': true })],
        ['blockdev-add', hd(0, { 'l2-cache-entry-size': 4096, 'lazy-refcounts': true })],
        nbdServer,
        ['block-export-add', { type: 'nbd', id: 'e0', 'node-name': 'hd0', writable: true }],
        ['blockdev-add', hd(1)],
        ['block-export-add', { type: 'nbd', id: 'e1', 'node-name': 'hd1', writable: true }],
        { sh: nbdWrite('hd0', 'write -P 42 0 64k') },
        { sh: nbdWrite('hd1', 'write -P 43 0 64k') },
        { sh: dirtyBits('h0.qcow2') },
        { sh: dirtyBits('h1.qcow2') },
        // Turning them off marks the image clean first.
        reopen(hdRef(1, { 'lazy-refcounts': false })),
        { sh: dirtyBits('h1.qcow2') },
        ['block-export-del', { id: 'e0' }],
        ['block-export-del', { id: 'e1' }],
        ['blockdev-del', { 'node-name': 'hd0' }],
        ['blockdev-del', { 'node-name': 'hd0-file' }],
        { sh: dirtyBits('h0.qcow2') },
      ],
    );
    const text = JSON.stringify(log);
    expect(text).toContain('l2-cache-size may not exceed cache-size');
    expect(text).toContain('Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level');
    expect(text.match(/dirty bits of h1.qcow2: 1/g)?.length).toBe(1);
    expect(text.match(/dirty bits of h0.qcow2: 1/g)?.length).toBe(1);
    expect(text).toContain('dirty bits of h0.qcow2: 0');
  }, 60_000);

  it.concurrent('several nodes at once: one failing entry (options, a lookup, permissions) leaves every node, link and lock as it was', async () => {
    const before: Step[] = [nodes, { sh: opens('h0.qcow2') }, { sh: opens('h1.qcow2') }];
    const log = await compareSessions(
      images(
        ['img', 'create', '-q', '-f', 'qcow2', 'h0.qcow2', '1M'],
        ['img', 'create', '-q', '-f', 'qcow2', 'h1.qcow2', '1M'],
        ['img', 'create', '-q', '-f', 'qcow2', 'h2.qcow2', '1M'],
      ),
      [
        ['blockdev-add', { ...hd(0), backing: null }],
        ['blockdev-add', { ...hd(1), backing: null }],
        ['blockdev-add', { ...hd(2), backing: null }],
        ...before,
        reopen(hdRef(0, { backing: 'hd2', 'read-only': true }), hdRef(1, { 'detect-zeroes': 'on', backing: 'hd2' }), hdRef(2, { 'lazy-refcounts': 'x' })),
        reopen(hdRef(0, { backing: 'hd2', 'read-only': true }), hdRef(1, { 'detect-zeroes': 'on', backing: 'hd2' }), hdRef(2, { 'l2-cache-entry-size': 3 })),
        ...before,
        reopen(hdRef(0, { backing: 'hd2', 'read-only': true }), hdRef(1, { backing: null, file: 'hd2-file' })),
        reopen(hdRef(0, { backing: 'hd1', 'read-only': true }), hdRef(1, { backing: null }), hdRef(9)),
        ...before,
        reopen(hdRef(0, { backing: 'hd1', 'read-only': true }), hdRef(1, { 'detect-zeroes': 'on', backing: 'hd2' }), hdRef(2, { 'read-only': true, backing: null })),
        ...before,
      ],
    );
    expect(JSON.stringify(log[11])).toContain("Permission conflict on node 'hd2-file'");
    // The failures leave the graph as it was.
    expect(log[8]).toEqual(log[3]);
    expect(log[13]).toEqual(log[3]);
  }, 60_000);
});
