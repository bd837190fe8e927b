import type { BlockGraph } from '../../blockdev/graph.js';
import { BlockBackend } from '../../blockdev/block-backend.js';
import type { BlockNode } from '../../blockdev/node.js';
import { type QemuIoTarget, runQemuIoCommand } from '../../blockdev/qemu-io/index.js';
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

/**
 * `qemu-io` in HMP. Its command's output is qemu-io's printf: qemu-system
 * writes it to its stdout and answers "" (the iotests' reference outputs
 * have `{"return": ""}`); the storage daemon, which has no HMP in QEMU,
 * answers with it as blockemu's extension (`toStdout` unset).
 */
async function hmpQemuIo(graph: BlockGraph, words: string[], toStdout?: (text: string) => void): Promise<string> {
  const args = words.slice(1);
  if (args[0] === '-d') args.shift(); // qdev lookup: node names are all we have
  if (args.length !== 2) return crlf(`qemu-io: usage: qemu-io [-d] [device] "[command]"\n`);
  const [device, cmd] = args as [string, string];
  const node = graph.get(device);
  // hmp_qemu_io looks the name up as a BlockBackend first, then as a node only (bdrv_lookup_bs(NULL, name)).
  if (!node) return crlf(`Error: Cannot find device='' nor node-name='${device}'\n`);
  // A BlockBackend of its own, taking nothing until a command writes (hmp_qemu_io's local_blk; qemu-io's command() asks for write).
  const blk = new BlockBackend({ perm: 0, shared: PERM_ALL });
  try {
    await blk.insert(node);
  } catch (err) {
    return crlf(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  try {
    const r = await runQemuIoCommand(cmd, backendTarget(blk, node));
    const text = r.chunks.map((c) => c.text).join('');
    if (!toStdout) return crlf(text);
    toStdout(text);
    return '';
  } finally {
    await blk.remove();
  }
}

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
    read: (o, l) => node.read(o, l),
    write: (o, d, f) => node.write(o, d, f),
    writeZeroes: (o, l, f) => node.writeZeroes(o, l, f),
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
    if (words[0] === 'qemu-io') return hmpQemuIo(ctx.graph, words, ctx.machine ? (t) => void process.stdout.write(t) : undefined);
    return crlf(`unknown command: '${words[0]}'\n`);
  });
}
