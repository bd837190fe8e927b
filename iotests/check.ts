/**
 * One run of QEMU's iotests `check` with a given set of tools: a private
 * copy of the test tree, wrapper programs, and the per-test outcome read
 * off check's output (and, for a failure, where its output first differs).
 */
import { spawn } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export type Tools = 'qemu' | 'blockemu';

/**
 * Which programs a run swaps: `tools`, the tool-only tests with blockemu
 * img/io as qemu-img/qemu-io; `system`, the tests that start a VM or a
 * storage daemon, with blockemu-system-x86_64 as QEMU_PROG and `blockemu
 * daemon` as QSD_PROG (QEMU's own qemu-img, qemu-io and qemu-nbd).
 */
export type Suite = 'tools' | 'system';

export interface Outcome {
  test: string;
  status: 'pass' | 'fail' | 'not run';
  /** check's reason for a test not run; for a failure, the first line that differs. */
  why: string;
  /** How long it ran, as check measured it (seconds; 0 when not given). */
  seconds: number;
}

const BLOCKEMU = resolve(import.meta.dirname, '..', 'bin', 'blockemu.js');
const BLOCKEMU_SYSTEM = resolve(import.meta.dirname, '..', 'bin', 'blockemu-system-x86_64.js');

/**
 * Debian's qemu-system-x86_64 is built without the qtest accelerator, and
 * iotests ask for it twice (QEMU_OPTIONS and python/qemu/machine/qtest.py's
 * `-accel qtest`): the baseline's wrapper asks for tcg instead. The -qtest
 * socket still works with tcg; only clock_step/clock_set are refused there.
 */
const QEMU_SYSTEM_TCG = `#!/bin/sh
prev=
for a do
  shift
  if [ "$prev" = "-accel" ] && [ "$a" = "qtest" ]; then a=tcg; fi
  prev=$a
  set -- "$@" "$a"
done
exec qemu-system-x86_64 "$@"
`;

/**
 * QEMU's own qemu-img. Its LUKS creation times PBKDF2 by the thread's CPU
 * clock, which on these VMs reads 0 now and then under load (seen: 5 of 30
 * creates with the other core busy), and it then fails with "Unable to get
 * accurate CPU usage": a flake of QEMU's on this machine, not of the test.
 * A command line that may make a LUKS header is run with its output held
 * back, and run again while that is its error; others run as they are.
 */
const QEMU_IMG_RETRY_PBKDF = `#!/bin/sh
case "$*" in *luks*|*encrypt*) ;; *) exec qemu-img "$@" ;; esac
out=$(mktemp) err=$(mktemp)
for try in 1 2 3 4 5 6 7 8; do
  qemu-img "$@" >"$out" 2>"$err"
  rc=$?
  grep -q 'Unable to get accurate CPU usage' "$err" || break
done
cat "$out"
cat "$err" >&2
rm -f "$out" "$err"
exit $rc
`;

/** The VM (QEMU_PROG) of a run: its program file's name, which the tests' filters take as the name in messages. */
export function systemProg(suite: Suite, tools: Tools): string {
  return suite === 'system' && tools === 'blockemu' ? 'blockemu-system-x86_64' : 'qemu-system-x86_64';
}

/** Which program stands in for each tool; blockemu's print QEMU's names (BLOCKEMU_TOOL_NAMES), as the tests compare text. */
function wrappers(tools: Tools, suite: Suite): Record<string, string> {
  const be = (sub: string) => `#!/bin/sh\nBLOCKEMU_TOOL_NAMES=qemu exec "${process.execPath}" "${BLOCKEMU}" ${sub} "$@"\n`;
  const real = (prog: string) => `#!/bin/sh\nexec ${prog} "$@"\n`;
  if (suite === 'system') {
    return {
      'qemu-img': QEMU_IMG_RETRY_PBKDF,
      'qemu-io': real('qemu-io'),
      'qemu-nbd': real('qemu-nbd'),
      'qemu-storage-daemon': tools === 'blockemu' ? be('daemon') : real('qemu-storage-daemon'),
      // Its own name before its messages, which _filter_qemu replaces (the basename of QEMU_PROG).
      ...(tools === 'blockemu'
        ? { 'blockemu-system-x86_64': `#!/bin/sh\nexec "${process.execPath}" "${BLOCKEMU_SYSTEM}" "$@"\n` }
        : { 'qemu-system-x86_64': QEMU_SYSTEM_TCG }),
    };
  }
  return {
    'qemu-img': tools === 'blockemu' ? be('img') : QEMU_IMG_RETRY_PBKDF,
    'qemu-io': tools === 'blockemu' ? be('io') : real('qemu-io'),
    'qemu-nbd': real('qemu-nbd'),
    'qemu-storage-daemon': real('qemu-storage-daemon'),
    // The tool-only tests never start a VM; check only asks the system emulator for its default machine.
    'qemu-system-x86_64': '#!/bin/sh\nif [ "$1 $2" = "-machine help" ]; then printf "Supported machines are:\\npc                   Standard PC (default)\\n"; exit 0; fi\necho "qemu-system-x86_64: this stand-in runs no VM" >&2\nexit 1\n',
  };
}

/**
 * A python test's failure as its traceback tells it: in the first failing
 * test's report (up to unittest's next separator line), the innermost frame
 * in the test itself (not iotests.py or python/qemu), its code line, the
 * last exception of the chain, and a failed launch's "Output:" (what
 * QEMU_PROG printed). Undefined when the output has no traceback.
 */
export function pythonFailure(out: string): string | undefined {
  const lines = out.split('\n');
  const start = lines.findIndex((l) => l.startsWith('Traceback (most recent call last):'));
  if (start < 0) return undefined;
  let stop = lines.findIndex((l, i) => i > start && /^(={20,}|-{20,})$/.test(l));
  if (stop < 0) stop = lines.length;
  let frame = '';
  let exc = '';
  for (let i = start; i < stop; i++) {
    if (!lines[i]!.startsWith('Traceback (most recent call last):')) continue;
    for (i++; i < stop && /^\s/.test(lines[i]!); i++) {
      const m = /^\s+File "([^"]+)", line (\d+), in (\S+)/.exec(lines[i]!);
      if (m && !/\/python\/|iotests\.py$|\/usr\/lib\/|\/\.pyenv\//.test(m[1]!)) frame = `${m[1]!.replace(/.*\/qemu-iotests\//, '')}:${m[2]} in ${m[3]}: ${(lines[i + 1] ?? '').trim()}`;
    }
    exc = (lines[i] ?? '').trim();
  }
  const output = lines.slice(start, stop).find((l) => /^\s*Output: ./.test(l));
  return [frame, exc, output?.trim()].filter((x) => x).join(' — ');
}

/** The first line where the output differs from the reference, as "expected | got". */
async function firstDifference(expected: string, got: string): Promise<string> {
  const [a, b] = await Promise.all([readFile(expected, 'utf8').catch(() => ''), readFile(got, 'utf8').catch(() => '')]);
  // Lines as testrunner.py reads them (universal newlines: \r, \n and \r\n all end a line), so a progress line's \r is no difference.
  // Spaces at line ends are no difference either (testrunner.py's file_diff strips them).
  const x = a.split(/\r\n|\r|\n/).map((l) => l.trimEnd());
  const y = b.split(/\r\n|\r|\n/).map((l) => l.trimEnd());
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (x[i] !== y[i]) return `line ${i + 1}: expected ${JSON.stringify(x[i] ?? '<end>')}, got ${JSON.stringify(y[i] ?? '<end>')}`;
  }
  return 'output mismatch';
}

/** check prints "NNN   pass   [start] [end]   1.2s   description" (lines separated by \r or \n when not on a terminal). */
const LINE = /^(\S+)\s+(pass|fail|not run)\s+(?:\[[^\]]*\]\s*)*(?:(\d+(?:\.\d+)?)s)?\s*(.*)$/;

let python: Promise<string> | undefined;

/**
 * The python3 that runs check: the first on PATH, unless it lacks libnbd's
 * bindings and Debian's own has them. nbd-multiconn needs `import nbd`,
 * which python3-libnbd installs for /usr/bin/python3 only, while a pyenv
 * or /usr/local python3 may come first on PATH (it does on these machines).
 */
export function iotestsPython(): Promise<string> {
  python ??= (async () => {
    const { execFile } = await import('node:child_process');
    const imports = (py: string) => new Promise<boolean>((res) => execFile(py, ['-c', 'import nbd'], (err) => res(!err)));
    if (await imports('python3')) return 'python3';
    return (await imports('/usr/bin/python3')) ? '/usr/bin/python3' : 'python3';
  })();
  return python;
}

/** `check`'s options for a format as the lists name it: `raw`, or `raw/nbd` for a format over a protocol other than file. */
export function checkFormatArgs(fmt: string): string[] {
  const [format, protocol] = fmt.split('/');
  return protocol === undefined ? [`-${format}`] : [`-${format}`, `-${protocol}`];
}

export async function runCheck(opts: { src: string; tools: Tools; suite?: Suite; fmt: string; tests: string[]; jobs: number; log?: (line: string) => void }): Promise<Outcome[]> {
  const suite = opts.suite ?? 'tools';
  const work = await mkdtemp(join(tmpdir(), `blockemu-iotests-${opts.tools}-`));
  try {
    const tree = join(work, 'tree');
    await mkdir(join(tree, 'tests'), { recursive: true });
    await cp(join(opts.src, 'tests', 'qemu-iotests'), join(tree, 'tests', 'qemu-iotests'), { recursive: true });
    await cp(join(opts.src, 'python'), join(tree, 'python'), { recursive: true });
    const progs = join(work, 'bin');
    await mkdir(progs);
    for (const [name, text] of Object.entries(wrappers(opts.tools, suite))) {
      await writeFile(join(progs, name), text);
      await chmod(join(progs, name), 0o755);
    }
    const testDir = join(work, 'scratch');
    const env = {
      ...process.env,
      QEMU_PROG: join(progs, systemProg(suite, opts.tools)),
      QEMU_IMG_PROG: join(progs, 'qemu-img'),
      QEMU_IO_PROG: join(progs, 'qemu-io'),
      QEMU_NBD_PROG: join(progs, 'qemu-nbd'),
      QSD_PROG: join(progs, 'qemu-storage-daemon'),
      TEST_DIR: testDir,
      SOCK_DIR: join(work, 'sock'),
    };
    const iotests = join(tree, 'tests', 'qemu-iotests');
    const py = await iotestsPython();
    const out = await new Promise<string>((res, rej) => {
      const p = spawn(py, ['check', ...checkFormatArgs(opts.fmt), '-j', String(opts.jobs), ...opts.tests], { cwd: iotests, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      p.stdout.on('data', (d: Buffer) => {
        text += d.toString();
        for (const l of d.toString().split(/[\r\n]/)) if (LINE.test(l.trim()) && opts.log) opts.log(l.trim());
      });
      p.stderr.on('data', (d: Buffer) => (text += d.toString()));
      p.on('error', rej);
      p.on('close', () => res(text));
    });
    const results = new Map<string, Outcome>();
    for (const raw of out.split(/[\r\n]/)) {
      const m = LINE.exec(raw.trim());
      if (!m) continue;
      const [, test, status, secs, rest] = m as unknown as [string, string, Outcome['status'], string | undefined, string];
      // With -j, check gives each test its own TEST_DIR/NAME (testrunner.py).
      const bad = join(opts.jobs > 1 ? join(testDir, test) : testDir, `${test}.out.bad`);
      const ref = join(iotests, /^\d{3}$/.test(test) ? '' : 'tests', `${test}.out`);
      // A python test that exits non-zero ("failed, exit status 1") still leaves its output and traceback.
      const py = status === 'fail' ? pythonFailure(await readFile(bad, 'utf8').catch(() => '')) : undefined;
      const why = py ?? (status === 'fail' && /output mismatch/.test(rest) ? await firstDifference(ref, bad) : rest.trim());
      results.set(test, { test, status, why, seconds: Number(secs ?? 0) });
    }
    for (const t of opts.tests) if (!results.has(t)) results.set(t, { test: t, status: 'fail', seconds: 0, why: `check reported nothing for it: ${out.trim().split('\n').slice(-3).join(' / ')}` });
    return opts.tests.map((t) => results.get(t)!);
  } finally {
    // BLOCKEMU_IOTESTS_KEEP=1 leaves the scratch directories (the .out.bad files, the logs) for a look.
    if (process.env.BLOCKEMU_IOTESTS_KEEP === '1') console.error(`iotests: kept ${work}`);
    else await rm(work, { recursive: true, force: true });
  }
}

/** Bash tests that start no VM and no daemon: the tests the tools alone can run. */
export async function toolOnlyTests(src: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  const dir = join(src, 'tests', 'qemu-iotests');
  const names = [...(await readdir(dir)).filter((f) => /^\d{3}$/.test(f)), ...(await readdir(join(dir, 'tests'))).filter((f) => !f.includes('.')).map((f) => `tests/${f}`)];
  const vm = /_launch_qemu|_send_qemu_cmd|\$QEMU([^_A-Z]|$)|\$\{QEMU\}|_run_qemu|_launch_qsd|QSD_PROG|qemu_comm_method|\$QSD/;
  const picked: string[] = [];
  for (const n of names.sort()) {
    const text = await readFile(join(dir, n), 'utf8').catch(() => '');
    if (!text.startsWith('#!/usr/bin/env bash')) continue;
    if (!(await readFile(join(dir, `${n}.out`)).then(() => true, () => false))) continue;
    if (vm.test(text)) continue;
    picked.push(n.replace(/^tests\//, ''));
  }
  return picked;
}

/**
 * The tests of QEMU's groups (`check -n -g quick,auto`, a dry run in a
 * scratch directory) for a format, in check's order. Needs the real
 * programs on PATH: check insists that each one exists.
 */
export async function groupTests(src: string, fmt: string, groups: string): Promise<string[]> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const run = promisify(execFile);
  const which = async (p: string) => (await run('sh', ['-c', `command -v ${p}`])).stdout.trim();
  const scratch = await mkdtemp(join(tmpdir(), 'blockemu-iotests-list-'));
  try {
    const env = {
      ...process.env,
      QEMU_PROG: await which('qemu-system-x86_64'),
      QEMU_IMG_PROG: await which('qemu-img'),
      QEMU_IO_PROG: await which('qemu-io'),
      QEMU_NBD_PROG: await which('qemu-nbd'),
      QSD_PROG: await which('qemu-storage-daemon'),
      TEST_DIR: scratch,
      SOCK_DIR: scratch,
    };
    const { stdout } = await run(await iotestsPython(), ['check', '-n', '-g', groups, ...checkFormatArgs(fmt)], { cwd: join(src, 'tests', 'qemu-iotests'), env });
    return stdout.split('\n').map((l) => l.trim().replace(/^tests\//, '')).filter((l) => l);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
