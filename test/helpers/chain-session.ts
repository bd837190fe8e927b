/**
 * Sessions on a 3-deep qcow2 chain (stream and commit tests), played on
 * qemu-storage-daemon and on blockemu alike with the session helper
 * (qmp-session.ts): the chain made by QEMU's tools, one daemon per
 * session on a copy of its own, then what QEMU's tools say of the images.
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import { qemuImg, qemuIo, run } from './qemu.js';
import { type After, compareSessions, file, type Step } from './qmp-session.js';

export { file, type Step } from './qmp-session.js';

/** 1 MiB images: base holds 1s at [0, 256k), mid 2s at [128k, 384k) and zeroes at [512k, 576k), top 3s at [256k, 320k). */
export async function makeChain(dir: string): Promise<void> {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '1M'));
  await ok(qemuIo('-c', 'write -q -P 1 0 256k', join(dir, 'base.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'mid.qcow2')));
  await ok(qemuIo('-c', 'write -q -P 2 128k 256k', '-c', 'write -q -z 512k 64k', join(dir, 'mid.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')));
  await ok(qemuIo('-c', 'write -q -P 3 256k 64k', join(dir, 'top.qcow2')));
  // What a guest reads through top and through mid, for comparing afterwards.
  await ok(qemuImg('convert', '-O', 'raw', join(dir, 'top.qcow2'), join(dir, 'top-view.raw')));
  await ok(qemuImg('convert', '-O', 'raw', join(dir, 'mid.qcow2'), join(dir, 'mid-view.raw')));
}

export interface ChainOptions {
  topReadOnly?: boolean;
  /** mid opened read-write (something may write to it). */
  midWritable?: boolean;
  /** One layer's image behind an inline blkdebug node failing as `rule` says. */
  failing?: { layer: 'base' | 'mid' | 'top'; rule: Record<string, unknown> };
}

/** The chain as named nodes (base and mid read-only unless told), each over a named file node: `blockdev-add` steps. */
export function explicitChain(o: ChainOptions = {}): Step[] {
  const image = (layer: 'base' | 'mid' | 'top') =>
    o.failing?.layer === layer ? { driver: 'blkdebug', image: file(`${layer}.qcow2`), 'inject-error': [o.failing.rule] } : file(`${layer}.qcow2`, `${layer}-file`);
  return [
    ['blockdev-add', { driver: 'qcow2', 'node-name': 'base', 'read-only': true, file: image('base') }],
    ['blockdev-add', { driver: 'qcow2', 'node-name': 'mid', ...(o.midWritable ? {} : { 'read-only': true }), backing: 'base', file: image('mid') }],
    ['blockdev-add', { driver: 'qcow2', 'node-name': 'top', backing: 'mid', ...(o.topReadOnly ? { 'read-only': true } : {}), file: image('top') }],
  ];
}

/**
 * query-named-block-nodes reduced to each node's name, driver and
 * read-only state, for sessions that reopen a node over blkdebug: QEMU
 * rebuilds the blkdebug node's options then, in another order, and where
 * two of its keys share a QDict bucket (inject-error's event and errno do)
 * its json: name changes — and with it whether the overlays' backing
 * names still match. blockemu keeps the order it was given.
 */
export const nodesSummary: Step = {
  look: async (c) => {
    const nodes = await c.execute<Array<Record<string, unknown>>>('query-named-block-nodes', { flat: true });
    return nodes.map((n) => ({ node: n['node-name'], drv: n['drv'], ro: n['ro'] }));
  },
};

/** A query's reply without the named members, wherever they are nested. */
export function without([command, args]: [string, Record<string, unknown>?], ...members: string[]): Step {
  const strip = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(strip) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([k]) => !members.includes(k)).map(([k, x]) => [k, strip(x)])) : v;
  return { look: async (c) => strip(await c.execute(command, args)) };
}

/** query-named-block-nodes (flat) without the named members, wherever they are nested. */
export const nodesWithout = (...members: string[]): Step => without(['query-named-block-nodes', { flat: true }], ...members);

/** The session on qemu-storage-daemon, then on blockemu, on fresh copies of the chain: equal logs, QEMU's returned. */
export function compareChain(steps: readonly Step[], after: After): Promise<unknown[]> {
  return compareSessions(makeChain, steps, (l) => l, after);
}

/**
 * qemu-img map without host offsets, neighbours alike in all else joined:
 * qemu-img splits a run where the clusters' host offsets are not
 * contiguous, and concurrent copies (a mirror's) allocate clusters in the
 * order they finish, in QEMU too.
 */
function guestMap(map: ReadonlyArray<Record<string, unknown>>): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const { offset: _host, ...e } of map) {
    const last = out[out.length - 1];
    const alike = last && (['data', 'zero', 'depth', 'present'] as const).every((k) => last[k] === e[k]);
    if (alike && (last['start'] as number) + (last['length'] as number) === e['start']) last['length'] = (last['length'] as number) + (e['length'] as number);
    else out.push({ ...e });
  }
  return out;
}

/**
 * What QEMU's tools say of the chain's images: the backing chain of each
 * (names and formats as written in the headers), whether `qemu-img check`
 * finds them clean, their allocation (guestMap), and whether
 * each named image still reads as its recorded view.
 */
export function imagesReport(names: readonly string[], views: Readonly<Record<string, string>> = {}) {
  return async (dir: string): Promise<unknown> => {
    const out: Record<string, unknown> = {};
    for (const name of names) {
      const path = join(dir, name);
      const info = await run('qemu-img', ['info', '--backing-chain', '--output=json', path]);
      const chain = info.code === 0 ? (JSON.parse(info.stdout) as Array<Record<string, unknown>>) : info.stderr;
      const check = await run('qemu-img', ['check', '--output=json', path]);
      const checked = check.code === 0 || check.code === 3 ? (JSON.parse(check.stdout) as Record<string, unknown>) : {};
      const map = await run('qemu-img', ['map', '--output=json', path]);
      out[name] = {
        chain: Array.isArray(chain)
          ? chain.map((i) => ({ filename: i['filename'], backing: i['backing-filename'] ?? null, full: i['full-backing-filename'] ?? null, format: i['backing-filename-format'] ?? null }))
          : chain,
        check: { code: check.code, corruptions: checked['corruptions'] ?? 0, leaks: checked['leaks'] ?? 0 },
        map: map.code === 0 ? guestMap(JSON.parse(map.stdout) as Array<Record<string, unknown>>) : map.stderr,
      };
    }
    for (const [name, view] of Object.entries(views)) {
      out[`${name} reads as ${view}`] = (await run('qemu-img', ['compare', '-q', '-F', 'raw', join(dir, name), join(dir, view)])).code;
    }
    return out;
  };
}
