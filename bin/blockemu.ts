#!/usr/bin/env node
import { loadEntry } from './launch.js';

const { main } = await loadEntry<typeof import('./cli.js')>('cli');
await main(process.argv);
