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
 *   commands matched to replies by id and typed by name from the schema
 *   (`QmpCommands`), events typed by name (`QmpEvents`) to wait for or
 *   iterate, per-call timeouts, connection retry for a daemon just started.
 * - Tests: `blockemu/vitest` gives vitest fixtures (`daemon`, `qmp`).
 * - Failures: the image layer throws `BlockError` (a stable `code`, an
 *   errno, QEMU's message); QMP commands reject with `QmpError` (QEMU's
 *   error class and desc, the command's name, the caller's stack).
 */
export { BlockError } from './image/errors.js';
export { createImage, FORMATS, openImage, type OpenOptions } from './image/open.js';
export type { CreateOptions } from './image/create.js';
export type { BlockImage, Extent, ImageFormat, ImageInfo, WriteZeroesOptions } from './image/types.js';
export { checkQcow2 } from './image/qcow2/check.js';
export { type ConnectOptions, QmpClient, type QmpEvent, type WaitOptions } from './qmp/client.js';
export type { CallOptions, QmpArgs, QmpCommandName, QmpCommands, QmpEventName, QmpEvents, QmpReturn, UntypedQmpEvent } from './qmp/typed.js';
export { QmpError } from './qmp/error.js';
export { type ClientOptions, type EmbeddedDaemon, startDaemon, type StartDaemonOptions } from './embed.js';
export type { BlockdevSpec } from './blockdev/open.js';
