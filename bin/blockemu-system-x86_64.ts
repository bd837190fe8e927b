#!/usr/bin/env node
import { basename } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runSystem } from '../src/cli/system-main.js';

// `blockemu system` as one executable, for a harness that runs QEMU_PROG
// directly: its messages start with its own name, which QEMU's iotests
// filters (_filter_qemu) replace by taking the basename of QEMU_PROG.
setFlagsFromString('--no-turbo-inlining'); // as bin/blockemu.ts, for the same reason
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
process.exitCode = await runSystem(process.argv.slice(2), basename(process.argv[1] ?? 'blockemu-system-x86_64').replace(/\.js$/, ''));
