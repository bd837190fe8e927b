import type { Command } from 'commander';
import { runSystem } from '../../src/cli/system-main.js';
import { addPassThroughCommand } from './pass-through.js';

/** `blockemu system [qemu-system-x86_64 options…]`, parsed with qemu-system's own rules and messages (src/cli/system-args.ts). */
export function addSystemCommand(program: Command): void {
  addPassThroughCommand(
    program,
    'system',
    'a storage-only stand-in for qemu-system-x86_64: its -blockdev, -chardev, -mon, -qmp, -qtest, -S options and VM-level QMP, no guest',
    (args) => runSystem(args),
  );
}
