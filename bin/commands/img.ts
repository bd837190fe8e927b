import type { Command } from 'commander';
import { addImgCheck } from './img-check.js';

/** `blockemu img …`: a subset of qemu-img with the same options and output. */
export function addImgCommand(program: Command): void {
  const img = program.command('img').description('create, inspect, check and convert images (like qemu-img)');
  addImgCheck(img);
}
