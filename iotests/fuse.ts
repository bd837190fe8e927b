/**
 * Whether FUSE mounts can be made here, for the iotests marked `fuse`
 * (108, 308: a FUSE export of the storage daemon under test, and of the
 * baseline's). The kernel's /dev/fuse and mount(2) need root; where they
 * cannot be had, those tests are left out with this reason.
 */
import { accessSync, constants } from 'node:fs';

export function fuseUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'FUSE exports mount with mount(8), which needs root';
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    return 'there is no usable /dev/fuse';
  }
  return undefined;
}
