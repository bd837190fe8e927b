import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockGraph } from '../../src/blockdev/graph.js';
import { openBlockdev } from '../../src/blockdev/open.js';
import { runQemuIoCommand } from '../../src/blockdev/qemu-io/index.js';
import { backendTarget } from '../../src/blockdev/qemu-io/backend-target.js';
import { BlockBackend } from '../../src/blockdev/block-backend.js';
import { PERM_ALL } from '../../src/image/perm.js';
import { qemu, qemuImg, qemuIo, withTempDir } from '../helpers/qemu.js';

/**
 * qcow2 over blkdebug, played on QEMU and on blockemu: the same image, the
 * same inject-error / set-state rules, the same qemu-io commands, then
 * `qemu-img check`. QEMU runs qemu-io with a json: filename (blkdebug
 * under qcow2); blockemu opens the same node tree and runs the same
 * commands through the interpreter the daemon's human-monitor-command
 * uses. qemu-io's default cache mode is writethrough, which blockemu plays
 * as `write -f` (FUA on every write, QEMU's writethrough); a case may ask
 * for writeback on both sides instead (QEMU's `-t writeback`, blockemu's
 * plain write, as through human-monitor-command).
 *
 * What must match: every line qemu-io prints on stdout (the timing lines
 * aside) and what `qemu-img check` finds afterwards (corruptions, and
 * whether clusters leaked). QEMU's close-time complaints on stderr
 * ("Failed to flush the L2 table cache") have no counterpart here.
 *
 * The cases are iotests' (026: an error at each metadata event, once and
 * not once, EIO and ENOSPC; 071: l2_load and set-state through QMP; 179:
 * no l2_update for zeroes already there; 257: a set-state chain started by
 * flush_to_disk) plus copy-on-write, backing, compressed and generic block
 * layer events. An event announced at another point than QEMU's changes
 * some outcome here: a metadata event announced at no I/O fails no write,
 * one announced at a read fails the read instead of the write.
 *
 * One difference remains by design, and its cases say so (`differs`):
 * QEMU writes a new L2 table and its L1 entry at once (l2_allocate),
 * where blockemu writes them with the next flush (the refcount blocks the
 * table needs it writes at the allocation, as QEMU). The events are
 * announced at QEMU's points all the same (see L2Editor), so a rule they
 * arm fails the request's next I/O; but a rule armed by an event that
 * QEMU announces before one of those writes (l2_update…) fails QEMU's
 * write and only blockemu's next flush when writes are not writethrough.
 */

interface Rules {
  'inject-error'?: Record<string, unknown>[];
  'set-state'?: Record<string, unknown>[];
}

interface Case {
  name: string;
  /** qemu-img create -o options (default: none, 64 KiB clusters). */
  opts?: string;
  /** Virtual size (default 64M). */
  size?: string;
  /** Sets the image up before the sessions, through plain qemu-io (same starting image on both sides). */
  prepare?: string[][];
  /** A base image (qemu-io commands to fill it) the image is created on. */
  backing?: string[];
  /** Internal snapshot taken after `prepare` (its L2 tables are then shared). */
  snapshot?: boolean;
  rules: Rules;
  /** Each session opens the image through blkdebug, runs its commands and closes it. */
  sessions: string[][];
  writeback?: boolean;
  /** Compare `qemu-img check`'s leak verdict too (026 ignores leaks, its "temporary failure" cases do not). */
  leaks?: boolean;
  /**
   * A known difference: blockemu's qemu-io output, which must differ from
   * QEMU's (once they agree, the case loses this and compares as usual).
   */
  differs?: { blockemu: string[]; why: string };
}

interface Outcome {
  out: string[];
  check: { corruptions: number; leaks: boolean; checkErrors: number };
}

const TIMING = /^\d[\d.]* (bytes|[KMGTPE]iB), \d+ ops; /;
const stdoutLines = (text: string) => text.split('\n').filter((l) => l !== '' && !TIMING.test(l));

/** qemu-io's writethrough mode makes every write FUA: blockemu's interpreter is asked for it with -f. */
function writethrough(cmd: string): string {
  const [word, ...rest] = cmd.split(' ');
  return word === 'write' || word === 'w' ? [word, '-f', ...rest].join(' ') : cmd;
}

function json(path: string, rules: Rules): string {
  return `json:${JSON.stringify({ driver: 'qcow2', file: { driver: 'blkdebug', ...rules, image: { driver: 'file', filename: path } } })}`;
}

async function checkOf(path: string): Promise<Outcome['check']> {
  const r = await qemuImg('check', '--output=json', path);
  const j = JSON.parse(r.stdout || '{}') as { corruptions?: number; leaks?: number; 'check-errors'?: number };
  return { corruptions: j.corruptions ?? 0, leaks: (j.leaks ?? 0) > 0, checkErrors: j['check-errors'] ?? 0 };
}

async function prepare(dir: string, c: Case): Promise<string> {
  const path = join(dir, 'base-img.qcow2');
  const size = c.size ?? '64M';
  const opts = c.opts ? ['-o', c.opts] : [];
  if (c.backing) {
    const base = join(dir, 'backing.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', base, size);
    for (const cmd of c.backing) await qemuIo('-c', cmd, base);
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', ...opts, path, size);
  } else {
    await qemuImg('create', '-q', '-f', 'qcow2', ...opts, path, size);
  }
  for (const cmds of c.prepare ?? []) await qemuIo(...cmds.flatMap((x) => ['-c', x]), path);
  if (c.snapshot) await qemuImg('snapshot', '-c', 's1', path);
  return path;
}

async function onQemu(path: string, c: Case): Promise<Outcome> {
  const out: string[] = [];
  for (const s of c.sessions) {
    const r = await qemuIo(...(c.writeback ? ['-t', 'writeback'] : []), ...s.flatMap((x) => ['-c', x]), json(path, c.rules));
    out.push(...stdoutLines(r.stdout));
  }
  return { out, check: await checkOf(path) };
}

async function onBlockemu(path: string, c: Case): Promise<Outcome> {
  const out: string[] = [];
  for (const s of c.sessions) {
    const g = new BlockGraph();
    const node = await openBlockdev(g, { driver: 'qcow2', 'node-name': 'q', file: { driver: 'blkdebug', ...c.rules, image: { driver: 'file', filename: path } } });
    // Through a BlockBackend, as the tool and the monitor run qemu-io.
    const blk = new BlockBackend({ perm: 0, shared: PERM_ALL });
    await blk.insert(node);
    const target = backendTarget(blk, node);
    for (const cmd of s) {
      const r = await runQemuIoCommand(c.writeback ? cmd : writethrough(cmd), target);
      out.push(...stdoutLines(r.chunks.filter((k) => k.stream === 'stdout').map((k) => k.text).join('')));
    }
    await blk.remove();
    await g.closeAll();
  }
  return { out, check: await checkOf(path) };
}

/** Both sides from the same prepared image; the outcome to compare. */
async function play(dir: string, c: Case): Promise<{ qemu: Outcome; blockemu: Outcome }> {
  const start = await prepare(dir, c);
  const q = join(dir, 'qemu.qcow2');
  const b = join(dir, 'blockemu.qcow2');
  await copyFile(start, q);
  await copyFile(start, b);
  // A relative backing file name resolves next to each copy.
  return { qemu: await onQemu(q, c), blockemu: await onBlockemu(b, c) };
}

const inject = (event: string, more: Record<string, unknown> = {}): Rules => ({ 'inject-error': [{ event, ...more }] });

/** iotest 026's first part: an error at each event while writing 128 KiB to a 1 KiB-cluster image. */
function iotest026(): Case[] {
  const out: Case[] = [];
  for (const event of ['l1_update', 'l2_load', 'l2_update', 'l2_alloc_write', 'write_aio', 'refblock_load', 'refblock_update_part', 'refblock_alloc', 'cluster_alloc']) {
    for (const errno of [5, 28]) {
      for (const once of [true, false]) {
        out.push({
          name: `026 ${event} errno ${errno} once ${once}`,
          opts: 'cluster_size=1k',
          size: '1G',
          ...(event === 'l2_update' ? { prepare: [['write 0 512']] } : {}),
          rules: inject(event, { errno, once }),
          sessions: event === 'l2_load' ? [['write 0 128k'], ['write 0 128k'], ['read 0 128k']] : [['write 0 128k']],
        });
      }
    }
  }
  return out;
}

const CASES: Case[] = [
  ...iotest026(),
  // The same in writeback mode (human-monitor-command's qemu-io is writeback): the events QEMU
  // announces before writes it makes at once are announced at the same points, so their rules fail the write too.
  ...['l1_update', 'l2_load', 'l2_alloc_write', 'write_aio', 'refblock_load', 'refblock_update_part', 'refblock_alloc', 'cluster_alloc'].flatMap((event) =>
    [true, false].map((once): Case => ({ name: `writeback ${event} once ${once}`, opts: 'cluster_size=1k', size: '1G', rules: inject(event, { once }), sessions: [['write 0 128k', 'read 0 128k']], writeback: true })),
  ),
  // …but the L2 cache's write-back events come with blockemu's flush, not inside the write (the refcount blocks
  // a new L2 table needs are written at its allocation, as l2_allocate writes them).
  ...['l2_update'].flatMap((event) =>
    [true, false].map(
      (once): Case => ({
        name: `writeback ${event} once ${once}: the write succeeds, the flush at close fails`,
        opts: 'cluster_size=1k',
        size: '1G',
        rules: inject(event, { once }),
        sessions: [['write 0 128k', 'read 0 128k']],
        writeback: true,
        differs: { blockemu: ['wrote 131072/131072 bytes at offset 0', 'read 131072/131072 bytes at offset 0'], why: 'the new L2 table and its refcounts are written at the next flush, not in the write' },
      }),
    ),
  ),
  // 026, refcount table growth: 512-byte clusters, 16 MiB written (the table first covers 8 MiB).
  ...['refblock_alloc_hookup', 'refblock_alloc_write', 'refblock_alloc_write_blocks', 'refblock_alloc_write_table', 'refblock_alloc_switch_table', 'reftable_grow'].flatMap((event) =>
    [true, false].map((once): Case => ({ name: `026 growth ${event} once ${once}`, opts: 'cluster_size=512', size: '1G', rules: inject(event, { errno: 28, once }), sessions: [['write 0 16M']] })),
  ),
  // 026: a temporary failure leaks nothing.
  { name: '026 write_aio once, then the same write again', rules: inject('write_aio', { errno: 5, once: true }), sessions: [['write 0 1M', 'write 0 1M']], leaks: true },
  {
    name: '026 preallocated zero cluster kept on a failed write',
    opts: 'cluster_size=1k',
    size: '1k',
    prepare: [['write 0 1k', 'write -z 0 1k']],
    rules: inject('write_aio', { errno: 5, once: true }),
    sessions: [['write 0 1k']],
    leaks: true,
  },
  // 071: l2_load fails the read of a cluster whose table is on disk; set-state through events.
  { name: '071 l2_load on read', prepare: [['write -P 42 0 512']], rules: inject('l2_load'), sessions: [['read 0 512']], writeback: true },
  {
    name: '071 set-state: write_aio moves to the state that arms read_aio',
    prepare: [['write -P 42 0 512']],
    rules: { 'inject-error': [{ event: 'read_aio', state: 42 }], 'set-state': [{ event: 'write_aio', new_state: 42 }] },
    sessions: [['read 0 512', 'write 0 512', 'read 0 512']],
    writeback: true,
  },
  // 179: zeroes over zeroes change no table, so l2_update never comes.
  { name: '179 write -z over zeroes announces no l2_update', prepare: [['write -z 20M 2M']], rules: inject('l2_update', { immediately: true }), sessions: [['write -z -u 20M 2M'], ['write -z 20M 2M']] },
  { name: 'l2_update on a zero write that changes entries', prepare: [['write 20M 2M']], rules: inject('l2_update', { immediately: true }), sessions: [['write -z 20M 2M']] },
  // 257: flush_to_disk moves to state 2, the next read_aio to 3, which arms the error for the read after it.
  {
    name: '257 flush_to_disk starts a set-state chain',
    prepare: [['write 0 1M']],
    rules: {
      'set-state': [{ event: 'flush_to_disk', state: 1, new_state: 2 }, { event: 'read_aio', state: 2, new_state: 3 }],
      'inject-error': [{ event: 'read_aio', errno: 5, state: 3, once: true }],
    },
    sessions: [['write 2M 64k', 'flush', 'read 0 64k', 'read 64k 64k', 'read 128k 64k', 'read 192k 64k']],
    writeback: true,
  },
  { name: 'flush with nothing written reaches no flush_to_disk', prepare: [['write 0 64k']], rules: inject('flush_to_disk'), sessions: [['read 0 64k', 'flush', 'write 0 64k', 'read 0 64k']], writeback: true },
  { name: 'flush_to_disk after a write fails the flush, not the write', rules: inject('flush_to_disk', { once: true }), sessions: [['write 0 64k', 'flush', 'write 0 64k']], writeback: true },
  { name: 'flush_to_os once', rules: inject('flush_to_os', { once: true }), sessions: [['write 0 64k', 'flush', 'read 0 64k']], writeback: true },
  { name: 'writethrough: flush_to_disk is not announced by a write\'s own flush', rules: inject('flush_to_disk'), sessions: [['write 0 64k', 'write 64k 64k']] },
  // Data reads and writes.
  { name: 'read_aio once on allocated data', prepare: [['write 0 64k']], rules: inject('read_aio', { once: true }), sessions: [['read 0 64k', 'read 0 64k']] },
  { name: 'read_aio on unallocated clusters reads no file', rules: inject('read_aio'), sessions: [['read 0 64k']] },
  { name: 'write_aio with iotype read fails only the next read', prepare: [['write 0 64k']], rules: inject('write_aio', { iotype: 'read', once: true }), sessions: [['write 0 64k', 'read 0 64k', 'read 0 64k']] },
  { name: 'write_aio on a sector the write does not cover', rules: inject('write_aio', { sector: 1024 }), sessions: [['write 0 64k']] },
  // Copy-on-write: partial writes over a backing file, over zeroes.
  { name: 'cow_read once over a backing file', backing: ['write -P 7 0 1M'], rules: inject('cow_read', { once: true }), sessions: [['write 4k 4k', 'read -P 7 0 4k']] },
  { name: 'cow_write over a backing file', backing: ['write -P 7 0 1M'], rules: inject('cow_write', { once: true }), sessions: [['write 4k 4k', 'write 4k 4k']] },
  { name: 'cow_read with iotype write', backing: ['write -P 7 0 1M'], rules: inject('cow_read', { iotype: 'write', once: true }), sessions: [['write 4k 4k']] },
  { name: 'cow events on a fresh image (zero head and tail)', rules: inject('cow_read'), sessions: [['write 4k 4k']] },
  {
    name: 'cow_read over a backing image that has no data there',
    backing: ['write -P 7 0 64k'],
    rules: inject('cow_read', { once: true }),
    sessions: [['write 1M 4k']],
    differs: {
      blockemu: ['write failed: Input/output error'],
      why: "QEMU asks the backing chain whether head and tail read as zeroes (is_zero_cow) and zeroes the cluster instead (cluster_alloc_space); blockemu reads them through the backing image (cow_read)",
    },
  },
  { name: 'cluster_alloc_space on a partial write to a fresh image', rules: inject('cluster_alloc_space', { once: true }), sessions: [['write 4k 4k', 'write 4k 4k']] },
  { name: 'cluster_alloc_space not for whole clusters', rules: inject('cluster_alloc_space'), sessions: [['write 0 64k']] },
  { name: 'read_backing_aio arms, but the backing image is not under blkdebug', backing: ['write -P 7 0 1M'], rules: inject('read_backing_aio', { once: true }), sessions: [['read -P 7 0 64k', 'write 1M 64k']] },
  { name: 'read_backing_aio then a data read', backing: ['write -P 7 0 1M'], prepare: [['write -P 9 1M 64k']], rules: inject('read_backing_aio', { once: true }), sessions: [['read 0 64k', 'read -P 9 1M 64k']] },
  // Compressed clusters.
  { name: 'read_compressed', prepare: [['write -c -P 3 0 64k']], rules: inject('read_compressed', { once: true }), sessions: [['read -P 3 0 64k', 'read -P 3 0 64k']] },
  ...['write_compressed', 'cluster_alloc_bytes', 'l2_update_compressed'].map((event): Case => ({ name: `${event} on write -c`, rules: inject(event, { once: true }), sessions: [['write -c 0 64k', 'write -c 64k 64k']], writeback: true })),
  // Frees and shared tables.
  { name: 'cluster_free on discard', prepare: [['write 0 128k']], rules: inject('cluster_free', { once: true }), sessions: [['discard 0 64k', 'write 64k 64k']], writeback: true },
  {
    name: 'cluster_free on overwriting a compressed cluster',
    prepare: [['write -c 0 64k']],
    rules: inject('cluster_free', { once: true }),
    sessions: [['write 0 64k']],
    differs: {
      blockemu: ['write failed: Input/output error'],
      why: "QEMU's free makes its refcount cache wait for the L2 cache, which first writes the dirty refcount blocks and ignores that write's error (update_refcount does not check qcow2_cache_set_dependency); blockemu has no such write, and the flush fails",
    },
  },
  { name: 'l2_alloc_cow_read: writing a table a snapshot shares', prepare: [['write 0 64k']], snapshot: true, rules: inject('l2_alloc_cow_read', { once: true }), sessions: [['write 64k 64k', 'write 64k 64k']] },
  { name: 'l2_alloc_write with a snapshot', prepare: [['write 0 64k']], snapshot: true, rules: inject('l2_alloc_write', { once: true }), sessions: [['write 0 64k']] },
  // The generic block layer's write events on blkdebug itself.
  { name: 'pwritev once', rules: inject('pwritev', { once: true }), sessions: [['write 0 64k', 'write 0 64k']], writeback: true },
  { name: 'pwritev_done once', rules: inject('pwritev_done', { once: true }), sessions: [['write 0 64k', 'read 0 64k']] },
  // A write allocating an L2 table writes the refcount blocks before the data (l2_allocate): the rule fails the write.
  { name: 'pwritev_done once, writeback', rules: inject('pwritev_done', { once: true }), sessions: [['write 0 64k', 'read 0 64k']], writeback: true },
  { name: 'pwritev_zero: qcow2 writes no zeroes to its file', prepare: [['write 0 64k']], rules: inject('pwritev_zero'), sessions: [['write -z 0 64k']] },
];

describe.skipIf(!qemu.available)('qcow2 over blkdebug: the same outcomes as QEMU', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      await withTempDir(async (dir) => {
        const r = await play(dir, c);
        const view = (o: Outcome) => ({ out: o.out, corruptions: o.check.corruptions, checkErrors: o.check.checkErrors, ...(c.leaks ? { leaks: o.check.leaks } : {}) });
        if (c.differs) {
          expect(r.blockemu.out, c.differs.why).toEqual(c.differs.blockemu);
          expect(r.qemu.out, `QEMU now agrees with blockemu: drop 'differs' from this case`).not.toEqual(r.blockemu.out);
          expect({ ...view(r.blockemu), out: [] }).toEqual({ ...view(r.qemu), out: [] });
        } else {
          expect(view(r.blockemu)).toEqual(view(r.qemu));
        }
      });
    });
  }
});
