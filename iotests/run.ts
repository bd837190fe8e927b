/**
 * `npm run iotests -- [--fetch | --fetch-only] [--suite=tools|system] [--fmt=qcow2,raw]
 *   [--tests=001,002,… | --groups=quick,auto] [--jobs=N] [--tools=both|blockemu|qemu]
 *   [--baseline=always|on-failure] [--report=FILE] [--expect=FILE [--skip-slow]]`
 *
 * Runs QEMU 7.2's own iotests (Debian's source package) with `blockemu img`
 * and `blockemu io` as QEMU_IMG_PROG and QEMU_IO_PROG, and the same tests
 * with QEMU's tools as the baseline, so a failure of blockemu can be told
 * from one of the environment. Without --tests: every bash test that needs
 * only the tools. Prints one line per test and format (baseline, blockemu,
 * the first line that differs) and, with --report, writes the table as
 * Markdown. With --expect, the file lists "FMT TEST" pairs that passed
 * before: the run fails when one of them no longer passes (the count only
 * grows), and says which new passes to add; --skip-slow leaves out
 * those marked `slow` there (minutes each: a Node start per tool call). --fetch-only fetches the
 * source (when not there yet) and runs nothing. --baseline=on-failure runs
 * blockemu first and the baseline only for the tests blockemu did not pass
 * (CI's run: what a failure needs to be told from one of the environment,
 * at half the cost).
 *
 * --suite=system runs the tests that start a VM or a storage daemon
 * instead: blockemu-system-x86_64 as QEMU_PROG and `blockemu daemon` as
 * QSD_PROG, with QEMU's own qemu-img, qemu-io and qemu-nbd; the baseline
 * is qemu-system-x86_64 (`-accel qtest` mapped to tcg, which Debian's
 * build lacks) and qemu-storage-daemon. Its tests: --tests, or the VM and
 * daemon tests of --groups (those not tool-only), or by default the list
 * of issue 17 (SYSTEM_TARGETS).
 */
import { fuseUnavailable } from './fuse.js';
import { readFile, writeFile } from 'node:fs/promises';
import { groupTests, type Outcome, runCheck, type Suite, type Tools, toolOnlyTests } from './check.js';
import { findQemuSource } from './source.js';

function flags(argv: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of argv) {
    const f = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!f) throw new Error(`unknown argument '${a}' (flags are --name or --name=value)`);
    m.set(f[1]!, f[2] ?? 'true');
  }
  const known = ['fetch', 'fetch-only', 'suite', 'fmt', 'tests', 'groups', 'jobs', 'tools', 'baseline', 'report', 'expect', 'skip-slow', 'help'];
  for (const k of m.keys()) if (!known.includes(k)) throw new Error(`unknown flag --${k}; known: ${known.map((x) => `--${x}`).join(' ')}`);
  return m;
}

/** The VM and daemon tests issue 17 names: what --suite=system runs by default. */
const SYSTEM_TARGETS = ['055', '056', '124', '129', '141', '185', '219', '257', 'copy-before-write', 'image-fleecing', 'qsd-jobs'];

interface Row {
  fmt: string;
  test: string;
  qemu?: Outcome;
  blockemu?: Outcome;
}

const cell = (o: Outcome | undefined) => (o ? o.status : '–');
const secs = (o: Outcome | undefined) => (o?.seconds ? `${o.seconds.toFixed(0)} s` : '');

/**
 * The expectations file: "FMT TEST" per line, a third word "slow" for
 * tests --skip-slow leaves out, or "fuse" for those that need FUSE mounts
 * (left out, with a note, where none can be made).
 */
async function expected(file: string, skipSlow: boolean): Promise<Set<string>> {
  const text = await readFile(file, 'utf8');
  const keys = new Set<string>();
  const noFuse = fuseUnavailable();
  for (const line of text.split('\n')) {
    const [fmt, test, mark] = line.replace(/#.*/, '').trim().split(/\s+/);
    if (!fmt || !test || (skipSlow && mark === 'slow')) continue;
    if (mark === 'fuse' && noFuse) {
      process.stderr.write(`${fmt} ${test} left out: ${noFuse}\n`);
      continue;
    }
    keys.add(`${fmt} ${test}`);
  }
  return keys;
}

async function main(): Promise<number> {
  const f = flags(process.argv.slice(2));
  if (f.has('help')) {
    console.log((await readFile(new URL(import.meta.url), 'utf8')).split('*/')[0]);
    return 0;
  }
  const src = await findQemuSource(f.has('fetch') || f.has('fetch-only'));
  if ('missing' in src) {
    console.error(`iotests: ${src.missing}`);
    return 2;
  }
  if (f.has('fetch-only')) {
    console.log(`iotests: QEMU 7.2's iotests are in ${src.dir}`);
    return 0;
  }
  const wantFile = f.has('expect') ? await expected(f.get('expect')!, f.has('skip-slow')) : undefined;
  // With an expectations file and no --fmt: the formats it names.
  const fmts = f.has('fmt') ? f.get('fmt')!.split(',') : wantFile ? [...new Set([...wantFile].map((k) => k.split(' ')[0]!))] : ['qcow2'];
  const baseline = f.get('baseline') ?? 'always';
  if (baseline !== 'always' && baseline !== 'on-failure') throw new Error(`--baseline=${baseline}: expected always or on-failure`);
  const onFailure = baseline === 'on-failure';
  // On failure only: blockemu first, so the baseline knows what to run.
  const toolSets: Tools[] = f.get('tools') === 'blockemu' ? ['blockemu'] : f.get('tools') === 'qemu' ? ['qemu'] : onFailure ? ['blockemu', 'qemu'] : ['qemu', 'blockemu'];
  const jobs = Number(f.get('jobs') ?? '2');
  const want = wantFile;
  const suite = (f.get('suite') ?? 'tools') as Suite;
  if (suite !== 'tools' && suite !== 'system') throw new Error(`--suite=${suite}: expected tools or system`);
  const toolOnly = await toolOnlyTests(src.dir);
  const named = f.has('tests') ? f.get('tests')!.split(',') : undefined;
  const grouped = async (fmt: string) => {
    const inGroups = await groupTests(src.dir, fmt, f.get('groups')!);
    return suite === 'tools' ? inGroups.filter((t) => toolOnly.includes(t)) : inGroups.filter((t) => !toolOnly.includes(t));
  };
  // Per format: with an expectations file and no --tests, only what it lists for that format.
  const testsFor = async (fmt: string): Promise<string[]> => {
    if (named) return named;
    if (f.has('groups')) return grouped(fmt);
    const all = suite === 'tools' ? toolOnly : SYSTEM_TARGETS;
    return want ? [...want].filter((k) => k.startsWith(`${fmt} `)).map((k) => k.slice(fmt.length + 1)).filter((t) => suite === 'system' || all.includes(t)) : all;
  };
  const label = (tools: Tools) =>
    suite === 'tools' ? `${tools}'s tools` : tools === 'qemu' ? 'qemu-system-x86_64 and qemu-storage-daemon' : 'blockemu-system-x86_64 and blockemu daemon';

  const rows: Row[] = [];
  for (const fmt of fmts) {
    const tests = await testsFor(fmt);
    if (tests.length === 0) continue; // check with no test named would run them all
    const byTest = new Map<string, Row>(tests.map((t) => [t, { fmt, test: t }]));
    for (const tools of toolSets) {
      const t0 = Date.now();
      const these = tools === 'qemu' && onFailure ? tests.filter((t) => byTest.get(t)!.blockemu?.status !== 'pass') : tests;
      if (these.length === 0) continue;
      // check's own line per finished test as it comes (a run takes minutes), on stderr.
      const out = await runCheck({ src: src.dir, tools, suite, fmt, tests: these, jobs, log: (l) => process.stderr.write(`  ${tools} -${fmt}: ${l}\n`) });
      for (const o of out) byTest.get(o.test)![tools] = o;
      // Some of QEMU's own tests race with its main loop (127's standby event, for one): the baseline gets
      // a second try at what it failed, so such a race does not read as "this test says nothing here".
      // blockemu gets none for its own failures; only where no verdict on it came out: check printed no line for the
      // test (its parallel output lost one), or QEMU's own qemu-img failed in it (the system suite's tools are QEMU's,
      // and its LUKS creation times PBKDF2 in thread CPU time, which fails now and then: "Unable to get accurate CPU usage").
      const noVerdict = (o: { status: string; why?: string }) => o.status === 'fail' && /^check reported nothing for it|Unable to get accurate CPU usage/.test(o.why ?? '');
      const failed = out.filter((o) => o.status === 'fail' && (tools === 'qemu' || noVerdict(o))).map((o) => o.test);
      if (failed.length > 0) {
        const again = await runCheck({ src: src.dir, tools, suite, fmt, tests: failed, jobs, log: (l) => process.stderr.write(`  ${tools} -${fmt} (again): ${l}\n`) });
        for (const o of again) if (o.status === 'pass') Object.assign(byTest.get(o.test)![tools]!, o);
      }
      const n = (s: string) => out.filter((o) => o.status === s).length;
      console.log(`iotests -${fmt} with ${label(tools)}: ${n('pass')} pass, ${n('fail')} fail, ${n('not run')} not run (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
    rows.push(...byTest.values());
  }

  for (const r of rows) {
    const why = (r.blockemu && r.blockemu.status !== 'pass' ? `  ${r.blockemu.why}` : '') + (r.qemu && r.qemu.status !== 'pass' ? `  [baseline: ${r.qemu.why}]` : '');
    console.log(`${r.fmt} ${r.test.padEnd(24)} qemu: ${cell(r.qemu).padEnd(8)} ${secs(r.qemu).padStart(6)}  blockemu: ${cell(r.blockemu).padEnd(8)} ${secs(r.blockemu).padStart(6)}${why}`);
  }
  if (f.has('report')) {
    const md = ['| format | test | QEMU tools | blockemu | first difference / reason |', '|---|---|---|---|---|'];
    for (const r of rows) md.push(`| ${r.fmt} | ${r.test} | ${cell(r.qemu)} ${secs(r.qemu)} | ${cell(r.blockemu)} ${secs(r.blockemu)} | ${(r.blockemu?.status === 'pass' ? '' : (r.blockemu?.why ?? '')).replaceAll('|', '\\|')} |`);
    await writeFile(f.get('report')!, md.join('\n') + '\n');
  }

  let status = 0;
  if (want && toolSets.includes('blockemu')) {
    const lost = rows.filter((r) => want.has(`${r.fmt} ${r.test}`) && r.blockemu?.status !== 'pass');
    const gained = rows.filter((r) => !want.has(`${r.fmt} ${r.test}`) && r.blockemu?.status === 'pass');
    for (const r of lost) console.log(`REGRESSION: ${r.fmt} ${r.test} passed before and now is '${cell(r.blockemu)}': ${r.blockemu?.why}`);
    for (const r of gained) console.log(`NEW PASS (add to ${f.get('expect')}): ${r.fmt} ${r.test}`);
    if (lost.length > 0) status = 1;
  }
  return status;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`iotests: ${(err as Error).message}`);
    process.exit(2);
  },
);
