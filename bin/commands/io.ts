import type { Command } from 'commander';

/** `blockemu io`: a subset of qemu-io. */
export function addIoCommand(program: Command): void {
  void program;
}
