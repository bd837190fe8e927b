/** Local protocol drivers' options (qapi/block-core.json 7.2): file (and host_device, host_cdrom), null-co/null-aio, nvme, vvfat. */
import { OnOffAuto } from '../common.js';
import { bool, int, str, struct, uint64 } from '../types.js';
import { BlockdevAioOptions } from './common.js';

/** drop-cache is conditional on CONFIG_LINUX; the reference build has it. */
export const BlockdevOptionsFile = struct('BlockdevOptionsFile', {
  filename: str,
  '*pr-manager': str,
  '*locking': OnOffAuto,
  '*aio': BlockdevAioOptions,
  '*aio-max-batch': int,
  '*drop-cache': bool,
  '*x-check-cache-dropped': bool,
});
export const BlockdevOptionsNull = struct('BlockdevOptionsNull', { '*size': int, '*latency-ns': uint64, '*read-zeroes': bool });
export const BlockdevOptionsNVMe = struct('BlockdevOptionsNVMe', { device: str, namespace: int });
export const BlockdevOptionsVVFAT = struct('BlockdevOptionsVVFAT', { dir: str, '*fat-type': int, '*floppy': bool, '*label': str, '*rw': bool });
