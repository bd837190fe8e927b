import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imgCheck } from './img-check.js';
import { imgCompare } from './img/compare.js';
import { imgConvert } from './img/convert.js';
import { imgCreate } from './img/create.js';
import { imgInfo } from './img/info.js';
import { imgMap } from './img/map.js';
import { type ImgIo, runSubcommand } from './img/output.js';
import { ioCommandLine } from './io.js';

/** One step of the demo: the command line a user would type, and how to run it in-process. */
interface Step {
  argv: string[];
  run(io: ImgIo): Promise<number>;
}

/**
 * `blockemu demo --tour`: a short tour of the image layer in
 * a fresh temporary directory. Each step prints the equivalent command line
 * and then runs it in this process, so the output is exactly what the
 * command prints. A raw disk and a qcow2 overlay on it are created, written
 * through `io`, inspected, checked, compared and converted. Returns the
 * first non-zero exit code (a failing step stops the tour).
 */
export async function runImageTour(io: ImgIo, dir?: string): Promise<number> {
  const where = dir ?? (await mkdtemp(join(tmpdir(), 'blockemu-demo-')));
  const p = (name: string) => join(where, name);
  const base = p('base.raw');
  const top = p('top.qcow2');
  const flat = p('flat.qcow2');
  const ioStep = (args: string[], commands: string[]): Step => ({
    argv: ['io', ...args, ...commands.flatMap((c) => ['-c', c])],
    run: (o) => ioCommandLine(o, [...args, ...commands.flatMap((c) => ['-c', c])]),
  });
  const steps: Step[] = [
    { argv: ['img', 'create', '-f', 'raw', base, '16M'], run: (o) => imgCreate(o, { format: 'raw', options: [], quiet: false, args: [base, '16M'] }) },
    ioStep(['-f', 'raw', base], ['write -P 0xaa 0 1M', 'write -P 0xbb 8M 64k']),
    {
      argv: ['img', 'create', '-f', 'qcow2', '-b', base, '-F', 'raw', top],
      run: (o) => imgCreate(o, { format: 'qcow2', backingFile: base, backingFormat: 'raw', options: [], quiet: false, args: [top] }),
    },
    ioStep(['-f', 'qcow2', top], ['write -P 0xcc 512k 4k', 'write -z 8M 64k', 'read -P 0xaa 0 4k', 'read -P 0xcc 512k 4k', 'map']),
    { argv: ['img', 'info', top], run: (o) => imgInfo(o, { backingChain: false, args: [top] }) },
    { argv: ['img', 'map', '--output=json', top], run: (o) => imgMap(o, { output: 'json', args: [top] }) },
    { argv: ['img', 'check', top], run: (o) => imgCheck(o, { quiet: false, args: [top] }) },
    {
      argv: ['img', 'convert', '-O', 'qcow2', top, flat],
      run: (o) => imgConvert(o, { outputFormat: 'qcow2', options: [], compress: false, progress: false, quiet: false, args: [top, flat] }),
    },
    { argv: ['img', 'compare', top, flat], run: (o) => imgCompare(o, { progress: false, quiet: false, strict: false, args: [top, flat] }) },
  ];
  io.out(`blockemu demo: working in ${where}\n`);
  for (const step of steps) {
    io.out(`\n$ blockemu ${step.argv.map(quote).join(' ')}\n`);
    const code = await runSubcommand(io, () => step.run(io));
    if (code !== 0) {
      io.err(`blockemu demo: step failed with exit code ${code}\n`);
      return code;
    }
  }
  io.out(`\nThe images are left in ${where} for you to try more commands on, e.g.\n  node dist/bin/blockemu.js io -c 'read -v 512k 32' ${top}\n`);
  return 0;
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}
