import { splitCommaList } from './comma-list.js';

/**
 * qemu-storage-daemon's command line, parsed as its getopt_long does
 * (storage-daemon/qemu-storage-daemon.c): long options with a required
 * argument as `--opt value` or `--opt=value`, unambiguous prefixes, the
 * short options -h, -V and -T, and glibc's messages for mistakes. Options
 * keep their order: QEMU processes them in order, so a --monitor may only
 * name a chardev defined before it.
 */
export const PROG = 'qemu-storage-daemon';

export type DaemonOption =
  | { name: 'blockdev' | 'chardev' | 'clock' | 'export' | 'fault' | 'log-level' | 'monitor' | 'nbd-server' | 'object' | 'pidfile' | 'trace'; value: string }
  | { name: 'daemonize' | 'help' | 'version' };

const LONG: Record<string, boolean> = {
  blockdev: true,
  chardev: true,
  daemonize: false,
  export: true,
  help: false,
  monitor: true,
  'nbd-server': true,
  object: true,
  pidfile: true,
  trace: true,
  version: false,
};
/** blockemu's own long options: matched only when spelled in full, so QEMU's abbreviations (--c for --chardev) keep meaning what they mean to qemu-storage-daemon. */
const EXTENSIONS: Record<string, boolean> = { clock: true, fault: true, 'log-level': true };
const SHORT: Record<string, DaemonOption['name']> = { h: 'help', V: 'version', T: 'trace' };

export class ArgsError extends Error {}

export function parseDaemonArgs(argv: readonly string[]): DaemonOption[] {
  const out: DaemonOption[] = [];
  const take = (name: string, i: number, inline: string | undefined, spelled: string): [string, number] => {
    if (inline !== undefined) return [inline, i];
    if (i + 1 >= argv.length) throw new ArgsError(spelled.startsWith('--') ? `option '${spelled}' requires an argument` : `option requires an argument -- '${name}'`);
    return [argv[i + 1]!, i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      if (i + 1 < argv.length) throw new ArgsError(`${argv[i + 1]}: Unexpected argument`);
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const typed = arg.slice(2, eq < 0 ? undefined : eq);
      const inline = eq < 0 ? undefined : arg.slice(eq + 1);
      const name = typed in EXTENSIONS ? typed : resolveLong(typed, arg);
      const spelled = `--${name}`;
      if (LONG[name] ?? EXTENSIONS[name]) {
        const [value, next] = take(name, i, inline, spelled);
        i = next;
        out.push({ name, value } as DaemonOption);
      } else {
        if (inline !== undefined) throw new ArgsError(`option '${spelled}' doesn't allow an argument`);
        out.push({ name } as DaemonOption);
      }
    } else if (arg.startsWith('-') && arg.length > 1) {
      // Clustered short options (-hV); -T takes the rest of the word or the next one.
      for (let j = 1; j < arg.length; j++) {
        const c = arg[j]!;
        const name = SHORT[c];
        if (!name) throw new ArgsError(`invalid option -- '${c}'`);
        if (name === 'trace') {
          const rest = arg.slice(j + 1);
          const [value, next] = take('T', i, rest === '' ? undefined : rest, '-T');
          i = next;
          out.push({ name, value });
          break;
        }
        out.push({ name } as DaemonOption);
      }
    } else {
      throw new ArgsError(`${arg}: Unexpected argument`);
    }
  }
  return out;
}

function resolveLong(typed: string, arg: string): string {
  if (typed in LONG) return typed;
  const matches = Object.keys(LONG).filter((n) => n.startsWith(typed));
  if (matches.length === 1 && typed !== '') return matches[0]!;
  if (matches.length > 1 && typed !== '') {
    throw new ArgsError(`option '${arg.split('=')[0]}' is ambiguous; possibilities: ${matches.map((m) => `'--${m}'`).join(' ')}`);
  }
  throw new ArgsError(`unrecognized option '${arg.split('=')[0]}'`);
}

/**
 * QemuOpts-style "implied,key=value,…" (--chardev, --monitor): the first
 * element without '=' is the implied key; ",," escapes a comma in a value.
 */
export function parseOptsString(text: string, implied?: string): Map<string, string> {
  const result = new Map<string, string>();
  const parts = splitCommaList(text);
  parts.forEach((p, idx) => {
    const eq = p.indexOf('=');
    if (eq < 0) {
      if (idx === 0 && implied) result.set(implied, p);
      else if (p !== '') result.set(p.startsWith('no') && p.length > 2 ? p.slice(2) : p, p.startsWith('no') && p.length > 2 ? 'off' : 'on');
    } else {
      result.set(p.slice(0, eq), p.slice(eq + 1));
    }
  });
  return result;
}

export const HELP = `Usage: qemu-storage-daemon [options]
QEMU storage daemon (blockemu: QEMU's block layer in TypeScript)

  -h, --help                display this help and exit
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                            accepted; tracing is done with --log-level
  -V, --version             output version information and exit

  --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]
             [,cache.direct=on|off][,cache.no-flush=on|off]
             [,read-only=on|off][,auto-read-only=on|off]
             [,force-share=on|off][,detect-zeroes=on|off|unmap]
             [,driver specific parameters...]
                         configure a block backend

  --chardev socket,id=<id>,path=<path>[,server=on|off][,wait=on|off]
                         configure a character device (Unix sockets only)

  --daemonize            daemonize the process, and have the parent exit
                         once startup is complete

  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]
           [,writable=on|off][,bitmap=<name>]
                         export the specified block node over NBD

  --monitor [chardev=]name[,mode=control][,pretty[=on|off]]
                         configure a QMP monitor

  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>
  --nbd-server addr.type=unix,addr.path=<path>
                         start an NBD server for exporting block nodes

  --object help | <type>,help | <type>,id=<id>[,<property>=<value>…]
                         create a QOM object (throttle-group, secret, iothread, main-loop)

  --pidfile <path>       write process ID to a file after startup

  --clock real|virtual   (blockemu) the clock jobs run on: virtual time moves
                         only when every job waits on it, or by
                         __org.blockemu_clock-advance; default real

  --fault node-name=<N>,type=<T>[,id=<id>][,<parameter>=<value>…]
                         (blockemu) arm a fault on a node, as
                         __org.blockemu_fault-add: type=error|enospc-after|
                         latency|stall|torn-write|crash (README: Fault scenarios)

  --log-level fatal|error|warn|info|debug|trace|silent
                         (blockemu) structured logs on stderr (QMP commands,
                         jobs, NBD clients, failures); default warn, or
                         BLOCKEMU_LOG_LEVEL
`;
