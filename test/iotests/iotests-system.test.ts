/**
 * QEMU 7.2's VM and storage-daemon iotests that pass with blockemu
 * (iotests/expected-system.txt: blockemu-system-x86_64 as QEMU_PROG,
 * `blockemu daemon` as QSD_PROG, QEMU's own qemu-img/qemu-io/qemu-nbd) keep
 * passing: one run of `npm run iotests -- --suite=system` over that list,
 * with qemu-system-x86_64 and qemu-storage-daemon as the baseline of what
 * fails, and one test here per entry. Needs the QEMU source (QEMU_SRC, or `npm run iotests
 * -- --fetch-only`) and qemu-system-x86_64.
 */
import { findQemuSource } from '../../iotests/source.js';
import { describeExpectedIotests } from '../helpers/expected-iotests.js';
import { qemu } from '../helpers/qemu.js';
import { qemuSystem } from '../helpers/system.js';

const src = await findQemuSource(false);
describeExpectedIotests({
  title: 'QEMU 7.2 iotests with blockemu-system-x86_64 and blockemu daemon',
  list: 'expected-system.txt',
  args: ['--suite=system'],
  missing:
    'missing' in src ? src.missing : !qemu.available || !qemu.storageDaemon ? "QEMU's tools or qemu-storage-daemon are not installed" : !qemuSystem.available ? 'qemu-system-x86_64 is not installed' : undefined,
  baseline: 'the baseline (qemu-system-x86_64 and qemu-storage-daemon)',
  timeoutMs: 900_000,
});
