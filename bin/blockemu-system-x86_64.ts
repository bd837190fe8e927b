#!/usr/bin/env node
import { basename } from 'node:path';
import { loadEntry } from './launch.js';

// `blockemu system` as one executable, for a harness that runs QEMU_PROG
// directly: its messages start with its own name, which QEMU's iotests
// filters (_filter_qemu) replace by taking the basename of QEMU_PROG.
const { main } = await loadEntry<typeof import('./system-cli.js')>('system-cli');
await main(process.argv, basename(process.argv[1] ?? 'blockemu-system-x86_64').replace(/\.js$/, ''));
