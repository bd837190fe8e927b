/** How a python iotest's failure is told: the test's own line and the last exception of the chain. */
import { describe, expect, it } from 'vitest';
import { pythonFailure } from '../../iotests/check.js';

describe('pythonFailure', () => {
  it("names the test's frame, the chained exception and a failed launch's Output line", () => {
    const out = [
      'E',
      '======================================================================',
      'ERROR: test_x (__main__.T.test_x)',
      '----------------------------------------------------------------------',
      'Traceback (most recent call last):',
      '  File "/t/python/qemu/qmp/protocol.py", line 983, in _readline',
      '    raise EOFError',
      'EOFError',
      '',
      'The above exception was the direct cause of the following exception:',
      '',
      'Traceback (most recent call last):',
      '  File "/t/tree/tests/qemu-iotests/tests/copy-before-write", line 49, in setUp',
      '    self.vm.launch()',
      '  File "/t/python/qemu/machine/machine.py", line 445, in launch',
      '    raise VMLaunchFailure(',
      'qemu.machine.machine.VMLaunchFailure: ConnectError: Failed to establish session: EOFError',
      '\tExit code: 1',
      '\tOutput: prog: -drive x: not supported',
      '',
      '======================================================================',
      'ERROR: test_y (__main__.T.test_y)',
    ].join('\n');
    expect(pythonFailure(out)).toBe(
      'tests/copy-before-write:49 in setUp: self.vm.launch() — qemu.machine.machine.VMLaunchFailure: ConnectError: Failed to establish session: EOFError — Output: prog: -drive x: not supported',
    );
    expect(pythonFailure('QA output created by 001\n')).toBeUndefined();
  });
});
