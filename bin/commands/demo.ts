import type { Command } from 'commander';
import { runDaemonDemo } from '../../src/cli/demo-daemon.js';
import { runImageTour } from '../../src/cli/demo-tour.js';
import { processIo } from '../../src/cli/img/output.js';

/** `blockemu demo` (npm start): the daemon on fresh demo images; `--tour` walks through img and io instead. */
export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('start the daemon on a raw and a qcow2 demo image in a temp directory (--tour: a guided run of img and io)')
    .option('--dir <dir>', 'work in this (existing) directory instead of a fresh temp directory')
    .option('--tour', 'run the img/io tour instead of the daemon')
    .action(async (o: { dir?: string; tour?: boolean }) => {
      if (o.tour) {
        process.exitCode = await runImageTour(processIo, o.dir);
        return;
      }
      const { daemon, done } = await runDaemonDemo(processIo, o.dir);
      const stop = () => void daemon.shutdown('signal');
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      await done;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    });
}
