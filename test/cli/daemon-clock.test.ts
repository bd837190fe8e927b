import { describe, expect, it } from 'vitest';
import { planDaemon } from '../../src/cli/daemon.js';
import { ArgsError, parseDaemonArgs } from '../../src/cli/daemon-args.js';

describe('--clock (a blockemu option on the qemu-storage-daemon command line)', () => {
  it('chooses the job clock', () => {
    expect(planDaemon(parseDaemonArgs(['--clock', 'virtual'])).config.clock).toBe('virtual');
    expect(planDaemon(parseDaemonArgs(['--clock=real'])).config.clock).toBe('real');
    expect(planDaemon(parseDaemonArgs([])).config.clock).toBeUndefined();
  });

  it('refuses other values and a missing one', () => {
    expect(() => planDaemon(parseDaemonArgs(['--clock', 'fast']))).toThrow("--clock fast: expected 'real' or 'virtual'");
    expect(() => parseDaemonArgs(['--clock'])).toThrow(new ArgsError("option '--clock' requires an argument"));
  });

  it('takes no part in abbreviations: --c still means --chardev, as for qemu-storage-daemon', () => {
    expect(parseDaemonArgs(['--c', 'socket,id=m,path=/tmp/x.sock,server=on,wait=off'])).toEqual([{ name: 'chardev', value: 'socket,id=m,path=/tmp/x.sock,server=on,wait=off' }]);
    expect(() => parseDaemonArgs(['--clo', 'virtual'])).toThrow("unrecognized option '--clo'");
  });
});
