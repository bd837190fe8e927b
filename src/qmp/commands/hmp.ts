import type { BlockGraph } from '../../blockdev/graph.js';
import { BlockBackend } from '../../blockdev/block-backend.js';
import type { BlockNode } from '../../blockdev/node.js';
import { type QemuIoTarget, runQemuIoCommand } from '../../blockdev/qemu-io/index.js';
import { BlockError } from '../../image/errors.js';
import { PERM_ALL, PERM_WRITE } from '../../image/perm.js';
import type { CommandTable } from '../dispatch.js';
import type { QmpContext } from '../context.js';
import { humanMonitorCommand } from '../schema/misc.js';

/**
 * HMP words as the monitor splits them: whitespace-separated, a word may be
 * "quoted" with \" and \\ escapes (monitor/hmp.c get_str).
 */
export function hmpWords(line: string): string[] | { error: string } {
  const words: string[] = [];
  let i = 0;
  for (;;) {
    while (line[i] === ' ' || line[i] === '\t') i++;
    if (i >= line.length) return words;
    let w = '';
    if (line[i] === '"') {
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\') {
          const c = line[++i];
          if (c === 'n') w += '\n';
          else if (c === 'r') w += '\r';
          else if (c === '\\' || c === "'" || c === '"') w += c;
          else return { error: `unsupported escape code: '\\${c ?? ''}'` };
          i++;
        } else {
          w += line[i++];
        }
      }
      if (line[i] !== '"') return { error: 'unterminated string' };
      i++;
    } else {
      while (i < line.length && line[i] !== ' ' && line[i] !== '\t') w += line[i++];
    }
    words.push(w);
  }
}

/** HMP output goes through the monitor, which ends lines with "\r\n". */
const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');

/** The BlockBackend hmp_qemu_io runs on: a -drive's by name, a device's by its id (-d), else one of its own on a node. */
function qemuIoBackend(graph: BlockGraph, device: string, qdev: boolean): { blk: BlockBackend; node: BlockNode | undefined; local: boolean } | string {
  const backends = graph.backends;
  if (qdev) {
    // blk_by_qdev_id: the device, then the BlockBackend attached to it (a virtio-blk-pci's is its virtio-backend's).
    const b = backends.byQdev(device);
    if (b === 'no-backend') return 'Device does not have a block device backend';
    if (!b) return `Device '${device}' not found`;
    return { blk: b.blk, node: b.node, local: false };
  }
  const b = backends.byName(device);
  if (b) return { blk: b.blk, node: b.node, local: false };
  const node = graph.get(device);
  // bdrv_lookup_bs(NULL, device)'s words (the name was tried as a BlockBackend first).
  if (!node) return `Cannot find device='' nor node-name='${device}'`;
  // A BlockBackend of its own, taking nothing until a command writes (hmp_qemu_io's local_blk; qemu-io's command() asks for write).
  return { blk: new BlockBackend({ perm: 0, shared: PERM_ALL }), node, local: true };
}

/**
 * `qemu-io` in HMP. Its command's output is qemu-io's printf: qemu-system
 * writes it to its stdout and answers "" (the iotests' reference outputs
 * have `{"return": ""}`); the storage daemon, which has no HMP in QEMU,
 * answers with it as blockemu's extension.
 */
async function hmpQemuIo(ctx: QmpContext, words: string[]): Promise<string> {
  const args = words.slice(1);
  const qdev = args[0] === '-d';
  if (qdev) args.shift();
  if (args.length !== 2) return crlf(`qemu-io: usage: qemu-io [-d] [device] "[command]"\n`);
  const [device, cmd] = args as [string, string];
  const found = qemuIoBackend(ctx.graph, device, qdev);
  if (typeof found === 'string') return crlf(`Error: ${found}\n`);
  const { blk, node, local } = found;
  if (local) {
    try {
      await blk.insert(node!);
    } catch (err) {
      return crlf(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  try {
    const r = await runQemuIoCommand(cmd, node ? backendTarget(blk, node) : NO_MEDIUM);
    const text = r.chunks.map((c) => c.text).join('');
    // qemu-system runs the command outside the HMP monitor's context: qemu-io prints to stdout and the reply is empty.
    if (ctx.machine) {
      process.stdout.write(text);
      return '';
    }
    return crlf(text);
  } finally {
    if (local) await blk.remove();
  }
}

/** A BlockBackend without a medium: every request fails with ENOMEDIUM. */
const noMedium = (): Promise<never> => Promise.reject(new BlockError('IO', 'No medium found', { errno: 'ENOMEDIUM' }));
const NO_MEDIUM: QemuIoTarget = {
  size: () => Number.MAX_SAFE_INTEGER,
  read: noMedium,
  write: noMedium,
  writeZeroes: noMedium,
  discard: noMedium,
  flush: noMedium,
  blockStatus: noMedium,
};

/** The node as qemu-io sees it through `blk`: the node's I/O, and write permission asked of the BlockBackend when a command writes. */
function backendTarget(blk: BlockBackend, node: BlockNode): QemuIoTarget {
  return {
    get readOnly() {
      return node.readOnly;
    },
    async acquireWrite() {
      const p = blk.perm;
      if (p.perm & PERM_WRITE) return undefined;
      try {
        await blk.setPerm({ perm: p.perm | PERM_WRITE, shared: p.shared });
        return undefined;
      } catch (err) {
        return err instanceof Error ? err.message : String(err);
      }
    },
    size: () => node.size(),
    // Through the BlockBackend, so its I/O limits apply (blk_pread/blk_pwrite).
    read: (o, l) => blk.read(o, l),
    write: (o, d, f) => blk.write(o, d, f),
    writeZeroes: (o, l, f) => blk.writeZeroes(o, l, f),
    discard: (o, l) => node.discard(o, l),
    flush: () => node.flush(),
    blockStatus: (o, l) => node.blockStatus(o, l),
    // Every node takes a compressed write; a driver without compression answers ENOTSUP, as in QEMU.
    writeCompressed: (o, d) => node.writeCompressed(o, d),
    ...(typeof (node as { info?: unknown }).info === 'function' ? { info: () => (node as unknown as Required<QemuIoTarget>).info() } : {}),
  };
}

/** human-monitor-command: the HMP `qemu-io` command (others are unknown, as HMP says). */
export function addHmpCommands(table: CommandTable<QmpContext>): void {
  table.add(humanMonitorCommand, async (args, ctx) => {
    const words = hmpWords(args['command-line']);
    if ('error' in words) return crlf(`${words.error}\n`);
    if (words.length === 0) return '';
    if (words[0] === 'qemu-io') return hmpQemuIo(ctx, words);
    return crlf(`unknown command: '${words[0]}'\n`);
  });
}
