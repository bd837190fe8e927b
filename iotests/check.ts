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

export interface Outcome {
  test: string;
  status: 'pass' | 'fail' | 'not run';
  /** check's reason for a test not run; for a failure, the first line that differs. */
  why: string;
  /** How long it ran, as check measured it (seconds; 0 when not given). */
  seconds: number;
}

const BLOCKEMU = resolve(import.meta.dirname, '..', 'bin', 'blockemu.js');

/** Which program stands in for each tool; blockemu's print QEMU's names (BLOCKEMU_TOOL_NAMES), as the tests compare text. */
function wrappers(tools: Tools): Record<string, string> {
  const be = (sub: string) => `#!/bin/sh\nBLOCKEMU_TOOL_NAMES=qemu exec "${process.execPath}" "${BLOCKEMU}" ${sub} "$@"\n`;
  const real = (prog: string) => `#!/bin/sh\nexec ${prog} "$@"\n`;
  return {
    'qemu-img': tools === 'blockemu' ? be('img') : real('qemu-img'),
    'qemu-io': tools === 'blockemu' ? be('io') : real('qemu-io'),
    'qemu-nbd': real('qemu-nbd'),
    'qemu-storage-daemon': real('qemu-storage-daemon'),
    // The tool-only tests never start a VM; check only asks the system emulator for its default machine.
    'qemu-system-x86_64': '#!/bin/sh\nif [ "$1 $2" = "-machine help" ]; then printf "Supported machines are:\\npc                   Standard PC (default)\\n"; exit 0; fi\necho "qemu-system-x86_64: this stand-in runs no VM" >&2\nexit 1\n',
  };
}

/** The first line where the output differs from the reference, as "expected | got". */
async function firstDifference(expected: string, got: string): Promise<string> {
  const [a, b] = await Promise.all([readFile(expected, 'utf8').catch(() => ''), readFile(got, 'utf8').catch(() => '')]);
  const x = a.split('\n');
  const y = b.split('\n');
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (x[i] !== y[i]) return `line ${i + 1}: expected ${JSON.stringify(x[i] ?? '<end>')}, got ${JSON.stringify(y[i] ?? '<end>')}`;
  }
  return 'output mismatch';
}

/** check prints "NNN   pass   [start] [end]   1.2s   description" (lines separated by \r or \n when not on a terminal). */
const LINE = /^(\S+)\s+(pass|fail|not run)\s+(?:\[[^\]]*\]\s*)*(?:(\d+(?:\.\d+)?)s)?\s*(.*)$/;

export async function runCheck(opts: { src: string; tools: Tools; fmt: string; tests: string[]; jobs: number; log?: (line: string) => void }): Promise<Outcome[]> {
  const work = await mkdtemp(join(tmpdir(), `blockemu-iotests-${opts.tools}-`));
  try {
    const tree = join(work, 'tree');
    await mkdir(join(tree, 'tests'), { recursive: true });
    await cp(join(opts.src, 'tests', 'qemu-iotests'), join(tree, 'tests', 'qemu-iotests'), { recursive: true });
    await cp(join(opts.src, 'python'), join(tree, 'python'), { recursive: true });
    const progs = join(work, 'bin');
    await mkdir(progs);
    for (const [name, text] of Object.entries(wrappers(opts.tools))) {
      await writeFile(join(progs, name), text);
      await chmod(join(progs, name), 0o755);
    }
    const testDir = join(work, 'scratch');
    const env = {
      ...process.env,
      QEMU_PROG: join(progs, 'qemu-system-x86_64'),
      QEMU_IMG_PROG: join(progs, 'qemu-img'),
      QEMU_IO_PROG: join(progs, 'qemu-io'),
      QEMU_NBD_PROG: join(progs, 'qemu-nbd'),
      QSD_PROG: join(progs, 'qemu-storage-daemon'),
      TEST_DIR: testDir,
      SOCK_DIR: join(work, 'sock'),
    };
    const iotests = join(tree, 'tests', 'qemu-iotests');
    const out = await new Promise<string>((res, rej) => {
      const p = spawn('python3', ['check', `-${opts.fmt}`, '-j', String(opts.jobs), ...opts.tests], { cwd: iotests, env, stdio: ['ignore', 'pipe', 'pipe'] });
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
      const why = status === 'fail' && /output mismatch/.test(rest) ? await firstDifference(ref, bad) : rest.trim();
      results.set(test, { test, status, why, seconds: Number(secs ?? 0) });
    }
    for (const t of opts.tests) if (!results.has(t)) results.set(t, { test: t, status: 'fail', seconds: 0, why: `check reported nothing for it: ${out.trim().split('\n').slice(-3).join(' / ')}` });
    return opts.tests.map((t) => results.get(t)!);
  } finally {
    await rm(work, { recursive: true, force: true });
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
