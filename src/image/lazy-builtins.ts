import { createRequire } from 'node:module';

/**
 * node:crypto and node:zlib loaded at their first use, not by every tool
 * start: only encrypted images, compressed clusters and a few commands need
 * them, and compiling their modules cost a `blockemu img`/`io` call about
 * 8 ms of its ~100 ms of its own start-up (measured, 2026-12-07).
 */
const load = createRequire(import.meta.url);

export const nodeCrypto = (): typeof import('node:crypto') => load('node:crypto') as typeof import('node:crypto');
export const nodeZlib = (): typeof import('node:zlib') => load('node:zlib') as typeof import('node:zlib');
