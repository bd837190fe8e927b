import { runQemuIoCommand } from '../blockdev/qemu-io/index.js';
import type { BlockImage } from '../image/types.js';
import { probedRawWarning, tryOpen } from './img/open.js';

/**
 * `blockemu io`: qemu-io 7.2's command-line tool over our images. Messages
 * keep qemu-io's wording under our program name — where qemu-io prints
 * "qemu-io: can't open device …" we print "blockemu io: can't open device …"
 * (the interop tests undo exactly that). The interactive prompt stays
 * "qemu-io> ", which scripts driving qemu-io over a pipe wait for.
 */
export const PROG = 'blockemu io';
const PROMPT = 'qemu-io> ';

export interface IoStreams {
  out(text: string): void;
  err(text: string): void;
  /** Command lines to run when no -c is given (qemu-io then reads stdin). */
  lines?: AsyncIterable<string>;
}

export interface IoArgs {
  format?: string;
  readOnly: boolean;
  /** -U: share everything (needs -r, as in qemu-io) */
  forceShare?: boolean;
  /** -d: QEMU's discard mode (ignore/off or unmap/on); qemu-io's default is unmap. */
  discard?: string;
  commands: string[];
  /** The operands: at most one image file. */
  args: string[];
}

export const IO_USAGE = `Usage: ${PROG} [OPTIONS]... [-c STRING]... [file]
QEMU Disk exerciser (a subset of qemu-io)

  -c, --cmd STRING     execute command with its arguments
                       from the given string
  -f, --format FMT     specifies the block driver to use (raw or qcow2)
  -r, --read-only      export read-only
  -d, --discard=MODE   use the given discard mode for the image
                       (ignore/off or unmap/on; default unmap)
  -U, --force-share    force shared permissions
  -h, --help           display this help and exit

See '${PROG} -c help' for information on available commands.
`;

/** Parses -d like QEMU's bdrv_parse_discard_flags. */
function discardUnmap(mode: string | undefined): boolean | undefined {
  if (mode === undefined) return true;
  if (mode === 'off' || mode === 'ignore') return false;
  if (mode === 'on' || mode === 'unmap') return true;
  return undefined;
}

/** Runs the tool; resolves to the exit code (1 when any command failed, as qemu-io). */
export async function ioMain(io: IoStreams, a: IoArgs): Promise<number> {
  if (a.args.length > 1) {
    io.out(IO_USAGE);
    return 1;
  }
  const unmap = discardUnmap(a.discard);
  if (unmap === undefined) {
    io.err(`${PROG}: Invalid discard option: ${a.discard}\n`);
    return 1;
  }
  const file = a.args[0];
  let image: BlockImage | undefined;
  if (file !== undefined) {
    const r = await tryOpen(file, { format: a.format, readOnly: a.readOnly, forceShare: a.forceShare });
    if ('inner' in r) {
      io.err(`${PROG}: can't open device ${file}: ${r.inner}\n`);
      return 1;
    }
    image = r.image;
    if (a.format === undefined && image.format === 'raw') io.err(probedRawWarning(file));
  }
  let failed = false;
  const run = async (line: string): Promise<boolean> => {
    if (isQuit(line)) return false;
    const r = await runQemuIoCommand(line, image, { errorPrefix: `${PROG}: `, unmap });
    for (const c of r.chunks) (c.stream === 'stdout' ? io.out : io.err)(c.text);
    if (r.failed) failed = true;
    return true;
  };
  try {
    if (a.commands.length > 0) {
      for (const line of a.commands) if (!(await run(line))) break;
    } else if (io.lines) {
      io.out(PROMPT);
      for await (const line of io.lines) {
        if (!(await run(line))) break;
        io.out(PROMPT);
      }
    }
  } finally {
    await image?.close();
  }
  return failed ? 1 : 0;
}

/** qemu-io's `quit` (alias `q`) lives in the tool, not in the command table, so the tool handles it. */
function isQuit(line: string): boolean {
  const word = line.split(' ').find((w) => w !== '');
  return word === 'quit' || word === 'q';
}
