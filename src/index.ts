/**
 * blockemu's embedding API: QEMU 7.2's block layer in TypeScript.
 *
 * - Images: `openImage` and `createImage` give raw and qcow2 images (format
 *   probed as QEMU does) with positional reads and writes, write-zeroes,
 *   discard, block status, flush and resize; `checkQcow2` is
 *   `qemu-img check`.
 * - A daemon for tests: `startDaemon` runs qemu-storage-daemon's stand-in
 *   in this process — block nodes (`blockdevs`, taken as blockdev-add takes
 *   them), a QMP monitor socket, optionally an NBD server with exports and
 *   a virtual clock for jobs — and `close()` tears it all down.
 * - `QmpClient` speaks QMP to it, or to qemu-storage-daemon itself:
 *   commands matched to replies by id, events to wait for or iterate.
 * - Failures: the image layer throws `BlockError` (a stable `code`, an
 *   errno, QEMU's message); QMP commands reject with `QmpError` (QEMU's
 *   error class and desc).
 */
export { BlockError } from './image/errors.js';
export { createImage, FORMATS, openImage, type OpenOptions } from './image/open.js';
export type { CreateOptions } from './image/create.js';
export type { BlockImage, Extent, ImageFormat, ImageInfo, WriteZeroesOptions } from './image/types.js';
export { checkQcow2 } from './image/qcow2/check.js';
export { QmpClient, type QmpEvent } from './qmp/client.js';
export { QmpError } from './qmp/error.js';
export { type EmbeddedDaemon, startDaemon, type StartDaemonOptions } from './embed.js';
export type { BlockdevSpec } from './blockdev/open.js';
