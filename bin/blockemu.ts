#!/usr/bin/env node
import { Command, Option } from 'commander';
import { LOG_LEVELS, setLogLevel } from '../src/log.js';
import { addDaemonCommand } from './commands/daemon.js';
import { addDemoCommand } from './commands/demo.js';
import { addImgCommand } from './commands/img.js';
import { addIoCommand } from './commands/io.js';
import { addQmpCommand } from './commands/qmp.js';

// A reader that went away (`blockemu … | head`) ends the output, not the process with a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

const program = new Command();
program
  .name('blockemu')
  // Subcommand options stay the subcommand's: `daemon` takes qemu-storage-daemon's own.
  .enablePositionalOptions()
  .description("QEMU's block layer in TypeScript: images, backup jobs, transactions and QMP")
  .version('0.1.0', '-V, --version')
  .addOption(new Option('--log-level <level>', 'log level for stderr').choices(LOG_LEVELS).default('warn'))
  .hook('preAction', (cmd) => setLogLevel(cmd.opts().logLevel as string));

addImgCommand(program);
addIoCommand(program);
addDemoCommand(program);
addDaemonCommand(program);
addQmpCommand(program);

await program.parseAsync(process.argv);
