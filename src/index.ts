/**
 * blockemu's embedding API. For now the image layer: open and create raw and
 * qcow2 images and do positional I/O on them; the daemon, jobs and QMP are
 * added here as they land.
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
