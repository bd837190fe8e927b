import { type CacheMode, parseCacheMode } from '../blockdev/qemu-io/cache-mode.js';
import { IO_PROG } from './tool-names.js';
import { parseCliObject } from '../qmp/cli-object.js';
import { QmpError } from '../qmp/error.js';
import { ObjectOptions } from '../qmp/schema/qom.js';
import { Getopt, type LongOption } from './getopt.js';

/**
 * qemu-io 7.2's command line: its getopt_long table, read with glibc's
 * rules (options may follow the file; "--" ends them; long options may be
 * abbreviated) and glibc's own messages, since qemu-io's optstring does not
 * start with ':'. Each option is acted on in order, as qemu-io's loop does:
 * an invalid --cache value stops the parse even if a later option is wrong.
 */
export const PROG = IO_PROG;

/** qemu-io's sopt: every short option, ':' after those taking a value. */
const SHORT = 'hVc:d:f:rsnCmki:t:T:U';
const LONGS: readonly LongOption[] = [
  { name: 'help', hasArg: false },
  { name: 'version', hasArg: false },
  { name: 'cmd', hasArg: true },
  { name: 'format', hasArg: true },
  { name: 'read-only', hasArg: false },
  { name: 'snapshot', hasArg: false },
  { name: 'nocache', hasArg: false },
  { name: 'copy-on-read', hasArg: false },
  { name: 'misalign', hasArg: false },
  { name: 'native-aio', hasArg: false },
  { name: 'aio', hasArg: true },
  { name: 'discard', hasArg: true },
  { name: 'cache', hasArg: true },
  { name: 'trace', hasArg: true },
  { name: 'object', hasArg: true },
  { name: 'image-opts', hasArg: false },
  { name: 'force-share', hasArg: false },
];
/** Long names to the short letter qemu-io's table maps them to. */
const LONG_TO_SHORT: Record<string, string> = {
  help: 'h', version: 'V', cmd: 'c', format: 'f', 'read-only': 'r', snapshot: 's', nocache: 'n', 'copy-on-read': 'C',
  misalign: 'm', 'native-aio': 'k', aio: 'i', discard: 'd', cache: 't', trace: 'T', 'force-share': 'U',
};

export type { CacheMode } from '../blockdev/qemu-io/cache-mode.js';
export { parseCacheMode };

export type AioMode = 'threads' | 'native' | 'io_uring';

export interface IoArgs {
  format?: string;
  readOnly: boolean;
  /** -s: writes go to a temporary overlay and are lost at exit. */
  snapshot: boolean;
  /** -C: accepted; see README. */
  copyOnRead: boolean;
  forceShare: boolean;
  /** -d: whether discards reach the image (BDRV_O_UNMAP; qemu-io's default is on). */
  unmap: boolean;
  cache: CacheMode;
  aio: AioMode;
  imageOpts: boolean;
  /** --object definitions, in order, created before the image is opened. */
  objects: Array<Record<string, unknown> & { 'qom-type': string; id: string }>;
  commands: string[];
  /** The operand: the image file, or with --image-opts its option string. */
  file?: string;
}

/** The parse either gives the arguments or says what to print and the exit code. */
export type IoParse = { args: IoArgs } | { exit: number; stdout?: string; stderr?: string } | { version: true };

/** -V's text, given blockemu's version ("7.2.0 (blockemu 0.1.0)"). */
export function ioVersion(version: string): string {
  return `${PROG} version ${version}\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n`;
}

export function ioUsage(prog: string): string {
  return `Usage: ${prog} [OPTIONS]... [-c STRING]... [file]
QEMU Disk exerciser

  --object OBJECTDEF   define an object such as 'secret' for
                       passwords and/or encryption keys
  --image-opts         treat file as option string
  -c, --cmd STRING     execute command with its arguments
                       from the given string
  -f, --format FMT     specifies the block driver to use
  -r, --read-only      export read-only
  -s, --snapshot       use snapshot file
  -n, --nocache        disable host cache, short for -t none
  -C, --copy-on-read   enable copy-on-read
  -m, --misalign       misalign allocations for O_DIRECT
  -k, --native-aio     use kernel AIO implementation
                       (Linux only, prefer use of -i)
  -i, --aio=MODE       use AIO mode (threads, native or io_uring)
  -t, --cache=MODE     use the given cache mode for the image
  -d, --discard=MODE   use the given discard mode for the image
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                       specify tracing options
                       see qemu-img(1) man page for full description
  -U, --force-share    force shared permissions
  -h, --help           display this help and exit
  -V, --version        output version information and exit

See '${prog} -c help' for information on available commands.

See <https://qemu.org/contribute/report-a-bug> for how to report bugs.
More information on the QEMU project at <https://qemu.org>.
`;
}

export const IO_USAGE = ioUsage(PROG);

/** bdrv_parse_aio; Debian's qemu-io 7.2 is built with io_uring, so it is accepted. */
function parseAio(mode: string): AioMode | undefined {
  return mode === 'threads' || mode === 'native' || mode === 'io_uring' ? mode : undefined;
}

/** bdrv_parse_discard_flags */
function parseDiscard(mode: string): boolean | undefined {
  if (mode === 'off' || mode === 'ignore') return false;
  if (mode === 'on' || mode === 'unmap') return true;
  return undefined;
}

export function parseIoArgs(argv: readonly string[]): IoParse {
  const a: IoArgs = {
    readOnly: false, snapshot: false, copyOnRead: false, forceShare: false, unmap: true,
    cache: { direct: false, noFlush: false, writethrough: true },
    aio: 'threads', imageOpts: false, objects: [], commands: [],
  };
  const fail = (message: string): IoParse => ({ exit: 1, stderr: `${PROG}: ${message}\n` });
  const getopt = new Getopt(PROG, argv, SHORT, LONGS);
  for (const e of getopt) {
    if (e.kind !== 'option') return { exit: 1, stderr: `${PROG}: ${getopt.diagnostic ?? 'invalid option'}\n`, stdout: IO_USAGE };
    const v = e.value ?? '';
    switch (LONG_TO_SHORT[e.name] ?? e.name) {
      case 's': a.snapshot = true; break;
      case 'n': a.cache = { ...a.cache, direct: true, writethrough: false }; break;
      case 'C': a.copyOnRead = true; break;
      case 'd': {
        const unmap = parseDiscard(v);
        if (unmap === undefined) return fail(`Invalid discard option: ${v}`);
        a.unmap = unmap;
        break;
      }
      case 'f': a.format = v; break;
      case 'c': a.commands.push(v); break;
      case 'r': a.readOnly = true; break;
      case 'm': break; // buffer alignment for O_DIRECT: our buffers are not the kernel's
      case 'k': a.aio = 'native'; break;
      case 'i': {
        const aio = parseAio(v);
        if (aio === undefined) return fail(`Invalid aio option: ${v}`);
        // "threads" clears nothing in QEMU: an earlier -k stays.
        if (aio !== 'threads') a.aio = aio;
        break;
      }
      case 't': {
        const cache = parseCacheMode(v);
        if (cache === undefined) return fail(`Invalid cache option: ${v}`);
        a.cache = cache;
        break;
      }
      case 'T': break; // QEMU's trace events are QEMU's; blockemu has none to enable
      case 'V': return { version: true };
      case 'h': return { exit: 0, stdout: IO_USAGE };
      case 'U': a.forceShare = true; break;
      case 'object':
        // qemu-io parses (and creates) each object when its option comes; a bad one ends the parse there.
        try {
          a.objects.push(parseCliObject(ObjectOptions, v, 'qom-type') as IoArgs['objects'][number]);
        } catch (err) {
          if (err instanceof QmpError) return fail(err.desc);
          throw err;
        }
        break;
      case 'image-opts': a.imageOpts = true; break;
    }
  }
  const operands = getopt.operands();
  if (operands.length > 1) return { exit: 1, stdout: IO_USAGE };
  if (a.format !== undefined && a.imageOpts) return fail('--image-opts and -f are mutually exclusive');
  a.file = operands[0];
  return { args: a };
}
