/** block-stream and block-commit (qapi/block-core.json 7.2). `base` and `top` of block-commit are deprecated in QEMU (a member feature blockemu's tables do not model). */
import { command } from '../command.js';
import { bool, int, str } from '../types.js';
import { BlockdevOnError } from './common.js';

export const blockStream = command('block-stream', {
  args: {
    '*job-id': str,
    device: str,
    '*base': str,
    '*base-node': str,
    '*backing-file': str,
    '*bottom': str,
    '*speed': int,
    '*on-error': BlockdevOnError,
    '*filter-node-name': str,
    '*auto-finalize': bool,
    '*auto-dismiss': bool,
  },
});

export const blockCommit = command('block-commit', {
  args: {
    '*job-id': str,
    device: str,
    '*base-node': str,
    '*base': str,
    '*top-node': str,
    '*top': str,
    '*backing-file': str,
    '*speed': int,
    '*on-error': BlockdevOnError,
    '*filter-node-name': str,
    '*auto-finalize': bool,
    '*auto-dismiss': bool,
  },
});
