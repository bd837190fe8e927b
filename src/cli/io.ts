import { type OpenRequest, QemuIoSession } from '../blockdev/qemu-io/index.js';
import { type IoArgs, ioVersion, parseIoArgs, PROG } from './io-args.js';
import { type IoDevice, type IoOpenSinks, openIoDevice } from './io-open.js';

/**
 * `blockemu io`: qemu-io 7.2's command-line tool over our images. Messages
 * keep qemu-io's wording under our program name — where qemu-io prints
 * "qemu-io: can't open device …" we print "blockemu io: can't open device …"
 * (the interop tests undo exactly that). The interactive prompt stays
 * "qemu-io> ", which scripts driving qemu-io over a pipe wait for.
 */
const PROMPT = 'qemu-io> ';

export { IO_USAGE, PROG } from './io-args.js';

export interface IoStreams {
  out(text: string): void;
  err(text: string): void;
  /** Command lines to run when no -c is given (qemu-io then reads stdin). */
  lines?: AsyncIterable<string>;
  /** Writes out what `out` holds back (a block-buffered stdout, as C stdio's into a pipe): qemu-io flushes at its prompt and before it raises a signal. */
  flush?(): void;
}

/** `blockemu io ARGS…`: qemu-io's command line, parsed as qemu-io parses it, then the tool; resolves to the exit code. */
export async function ioCommandLine(io: IoStreams, argv: readonly string[]): Promise<number> {
  const p = parseIoArgs(argv);
  if ('version' in p) {
    // The version lives with the daemon; only -V pays for loading it.
    const { VERSION } = await import('../daemon.js');
    io.out(ioVersion(`${VERSION.qemu.major}.${VERSION.qemu.minor}.${VERSION.qemu.micro} (${VERSION.package})`));
    return 0;
  }
  if ('exit' in p) {
    if (p.stderr !== undefined) io.err(p.stderr);
    if (p.stdout !== undefined) io.out(p.stdout);
    return p.exit;
  }
  return ioMain(io, p.args);
}

/** Runs the tool; resolves to the exit code (1 when any command failed, as qemu-io). */
export async function ioMain(io: IoStreams, a: IoArgs): Promise<number> {
  const unmap = a.unmap;
  const exit = (status: number): never => {
    io.flush?.();
    return process.exit(status);
  };
  const sinks: IoOpenSinks = { stdout: (t) => io.out(t), stderr: (t) => io.err(t), exit };
  if (a.objects.length > 0) {
    const made = await createObjects(a.objects);
    if (typeof made === 'string') {
      io.err(`${PROG}: ${made}\n`);
      return 1;
    }
    sinks.secretBytes = made;
  }
  const opened = await openIoDevice(a, sinks);
  for (const w of opened.warnings) io.err(w);
  if ('error' in opened) {
    io.err(`${PROG}: ${opened.error}\n`);
    return 1;
  }
  let failed = false;
  const print = (chunks: readonly { stream: 'stdout' | 'stderr'; text: string }[]) => {
    for (const c of chunks) (c.stream === 'stdout' ? io.out : io.err)(c.text);
  };
  // aio_* requests report when they complete, between or during later commands.
  let open: IoDevice | undefined = opened.device;
  const session = new QemuIoSession(open?.target, { errorPrefix: `${PROG}: `, unmap }, print, {
    closeImage: async () => {
      const closing = open;
      open = undefined;
      await closing?.close();
    },
    // sigraise/abort: the signal's default action ends the process, as raise(3) does in qemu-io.
    raise: async (signal, how) => {
      // qemu-io's sigraise flushes stdout and stderr first; abort(3) does not.
      if (how === 'sigraise') io.flush?.();
      if (signal !== 0) process.kill(process.pid, signal);
    },
    openImage: async (req, out) => {
      const next = await openCommandImage(req, sinks, a.imageOpts);
      if (next.stderr !== undefined) out.err(next.stderr);
      open = next.device;
      return next.device?.target;
    },
  });
  const run = async (line: string): Promise<boolean> => {
    if (isQuit(line)) return false;
    const r = await session.run(line, print);
    print(r.chunks);
    if (r.failed) failed = true;
    return true;
  };
  try {
    if (a.commands.length > 0) {
      for (const line of a.commands) if (!(await run(line))) break;
    } else if (io.lines) {
      const prompt = () => {
        io.out(PROMPT);
        io.flush?.();
      };
      prompt();
      for await (const line of io.lines) {
        if (!(await run(line))) break;
        prompt();
      }
    }
  } finally {
    // qemu-io drains outstanding requests (printing their reports) before closing.
    await session.drain();
    await open?.close();
  }
  return failed ? 1 : 0;
}

/**
 * qemu-io's `open`: its flags are the tool's own, so they are parsed as a
 * command line (same messages: "Invalid cache option: X"), and the -o
 * option strings go to the open as --image-opts' would, with the path as
 * the file name (openfile(path, flags, …, opts)). Under the tool's own
 * --image-opts the path is an option string too (open_f's imageOpts).
 */
async function openCommandImage(req: OpenRequest, sinks: IoOpenSinks, imageOpts: boolean): Promise<{ device?: IoDevice; stderr?: string }> {
  const p = parseIoArgs([...(imageOpts ? ['--image-opts'] : []), ...req.flags, ...(req.path !== undefined ? [req.path] : [])]);
  if (!('args' in p)) return { stderr: 'exit' in p ? p.stderr : undefined };
  const opened = await openIoDevice(p.args, sinks, req.options);
  const warnings = opened.warnings.join('');
  if ('error' in opened) return { stderr: `${warnings}${PROG}: ${opened.error}\n` };
  return { device: opened.device, stderr: warnings || undefined };
}

/** qemu-io's `quit` (alias `q`) lives in the tool, not in the command table, so the tool handles it. */
function isQuit(line: string): boolean {
  const word = line.split(' ').find((w) => w !== '');
  return word === 'quit' || word === 'q';
}

/**
 * --object: the objects qemu-io creates before opening the image (a secret
 * for encrypted images, a throttle group). blockemu's images use none of
 * them yet, so they live in a registry of their own for the run; an
 * object that cannot be made fails as in qemu-io. Returns the message.
 */
async function createObjects(objects: IoArgs['objects']): Promise<string | ((id: string) => Uint8Array)> {
  const { ObjectRegistry } = await import('../objects/registry.js');
  const { ThrottleGroups } = await import('../blockdev/throttle/group.js');
  const { objectAddProperties } = await import('../qmp/commands/qom.js');
  const { RealClock } = await import('../blockdev/clock.js');
  const clock = new RealClock();
  const registry = new ObjectRegistry(new ThrottleGroups(() => clock));
  for (const o of objects) {
    try {
      await registry.add(o['qom-type'], o.id, objectAddProperties(o));
    } catch (err) {
      return (err as Error).message;
    }
  }
  return (id) => registry.secretUtf8(id);
}
