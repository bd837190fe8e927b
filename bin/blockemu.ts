#!/usr/bin/env node
import { loadEntry } from './launch.js';

const { main } = await loadEntry<typeof import('./cli.js')>('cli');
const code = await main(process.argv);
if (code !== undefined) process.exitCode = code;
