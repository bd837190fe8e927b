import type { Command } from 'commander';
import { runDaemon } from '../../src/cli/daemon-main.js';
import { addPassThroughCommand } from './pass-through.js';

/** `blockemu daemon [qemu-storage-daemon options…]`, parsed with qemu-storage-daemon's own rules and messages (src/cli/daemon-args.ts). */
export function addDaemonCommand(program: Command): void {
  addPassThroughCommand(program, 'daemon', 'run the storage daemon (same options as qemu-storage-daemon: --blockdev, --chardev, --monitor, --pidfile …)', runDaemon);
}
