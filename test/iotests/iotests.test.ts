/**
 * QEMU 7.2's own iotests that pass with blockemu's tools (iotests/expected.txt)
 * keep passing: one run of `npm run iotests` over that list, with QEMU's
 * tools as the baseline of what fails, and one test here per entry. Needs the QEMU source
 * (QEMU_SRC, or `npm run iotests -- --fetch-only`, which .ci/run does).
 */
import { findQemuSource } from '../../iotests/source.js';
import { describeExpectedIotests } from '../helpers/expected-iotests.js';
import { qemu } from '../helpers/qemu.js';

const src = await findQemuSource(false);
describeExpectedIotests({
  title: 'QEMU 7.2 iotests with blockemu img and io',
  list: 'expected.txt',
  args: [],
  missing: 'missing' in src ? src.missing : !qemu.available ? "QEMU's tools are not installed" : undefined,
  baseline: "the baseline (QEMU's own tools)",
  timeoutMs: 1_800_000,
});
