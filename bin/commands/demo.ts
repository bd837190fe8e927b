import type { Command } from 'commander';
import { runDemo } from '../../src/cli/demo.js';
import { processIo } from '../../src/cli/img/output.js';

/** `blockemu demo` (npm start): a guided run of img and io on fresh images. */
export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('create a raw disk and a qcow2 overlay in a temp directory and show img/io on them')
    .option('--dir <dir>', 'work in this (existing) directory instead of a fresh temp directory')
    .action(async (o: { dir?: string }) => {
      process.exitCode = await runDemo(processIo, o.dir);
    });
}
